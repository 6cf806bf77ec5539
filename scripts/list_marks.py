#!/usr/bin/env python3
"""Does a cerm model write the list marks, and does it need them? Teacher-forced, numpy only.

    python3 scripts/list_marks.py MODEL.h5 TRACES.jsonl [--items N]

MODEL.h5 is a weights file or a checkpoint; TRACES.jsonl an SFT trace file from a perfect
teacher (`cerm data sft-traces --data data/synth/train.jsonl --error-rate 0 --out F`), so that
every mark in it is true; only its list traces are read. For the first list traces whose count
line carries a mark (docs/DATA.md, "Marks": `^` wrong case, `!` off-topic, `=` repeat), until
about N (default 90) marks:

1. P(mark): the model's probability of the mark token where the teacher wrote it, at the end of
   the flawed item in the count line. Greedy decoding writes the mark only when it is > 0.5.
2. P(later decision), with the count line as the teacher wrote it and with its marks removed:
   the probability of the first token that decides the later line (`2. need uppercase, got `
   followed by the flawed item rather than `all`; `4. need fruits, got ` likewise; the `+` of
   the `+. repeats` line). With marks the later line can copy them; without, it must find the
   flaw itself.

Prints the means per mark kind and the share above 0.5. Uses the forward of teacher_forced.py.
"""
import json
import re
import sys

import numpy as np

from teacher_forced import evaluation_sequence, load, log_probs, text

KINDS = {"^": "case", "!": "topic", "=": "repeat"}
# The later line that decides each kind: (line index or None for the `+.` line, text before the decision).
LATER = {"case": (1, "got "), "topic": (3, "got "), "repeat": (None, "")}


def later_decision(lines, kind, tokens, start, lp):
    """P of the token deciding `kind` in the later line of the evaluation `lines`, whose
    sequence is `tokens` (evaluation from `start`) with log-probs `lp`."""
    index, before = LATER[kind]
    if index is None:
        index = next((i for i, line in enumerate(lines) if line.startswith("+.")), None)
        if index is None:
            return None
    offset = len(text("\n".join(lines[:index]) + ("\n" if index else "")))
    cut = lines[index].find(before)
    if cut < 0:
        return None
    position = start + offset + len(text(lines[index][: cut + len(before)]))
    return float(np.exp(lp[position - 1, tokens[position]]))


def main():
    args = sys.argv[1:]
    if len(args) not in (2, 4) or (len(args) == 4 and args[2] != "--items"):
        sys.exit(__doc__)
    wanted = int(args[3]) if len(args) == 4 else 90
    config, weights = load(args[0])
    mark_p = {kind: [] for kind in KINDS.values()}
    later = {(kind, marks): [] for kind in KINDS.values() for marks in ("kept", "removed")}
    with open(args[1], encoding="utf-8") as f:
        for row in f:
            trace = json.loads(row)
            lines = trace["evaluation"].split("\n")
            # String traces mark their first wrong letter with `!` too: list traces only.
            if not trace["query"].startswith("List ") or not any(mark in lines[0] for mark in KINDS):
                continue
            tokens, _, (start, _) = evaluation_sequence(trace)
            lp = log_probs(config, weights, tokens)
            for position in range(start, start + len(text(lines[0]))):
                mark = chr(tokens[position]) if tokens[position] < 128 else ""
                if mark in KINDS:
                    mark_p[KINDS[mark]].append(float(np.exp(lp[position - 1, tokens[position]])))
            unmarked = [re.sub(r"[\^!=]", "", lines[0])] + lines[1:]
            unmarked_tokens, _, (unmarked_start, _) = evaluation_sequence(trace, "\n".join(unmarked))
            variants = (("kept", lines, tokens, start, lp),
                        ("removed", unmarked, unmarked_tokens, unmarked_start, log_probs(config, weights, unmarked_tokens)))
            for kind in {KINDS[m] for m in KINDS if m in lines[0]}:
                for name, evaluation, *sequence in variants:
                    p = later_decision(evaluation, kind, *sequence)
                    if p is not None:
                        later[(kind, name)].append(p)
            if sum(len(v) for v in mark_p.values()) >= wanted:
                break
    print(f"{'kind':7} {'marks':>5}  {'P(mark)':>16}  {'P(later | marks kept)':>22}  {'P(later | removed)':>19}")

    def cell(values):
        v = np.array(values)
        return f"{v.mean():.3f} ({np.mean(v > 0.5):.2f} > .5)" if len(v) else "-"

    for kind in KINDS.values():
        print(f"{kind:7} {len(mark_p[kind]):5d}  {cell(mark_p[kind]):>16}  {cell(later[(kind, 'kept')]):>22}  "
              f"{cell(later[(kind, 'removed')]):>19}")


if __name__ == "__main__":
    main()
