"""Writes the tokenizer parity fixtures under Tests/TokenizersTests/Fixtures/.

Run by hand from the repository root with the reference environment:

    .venv-ref/bin/python scripts/make_tokenizer_fixtures.py [--gguf PATH]

It writes
  corpus.jsonl                one JSON string per line: hand-written hard cases, then generated ones
                              (fixed seed, so a rerun writes the same file);
  {gpt2,llama3,qwen2}.tokenizer.json
                              small byte-level BPE tokenizers trained with `tokenizers`' BpeTrainer on
                              part of the corpus, each with the pre-tokenizer of that model family;
  {gpt2,llama3,qwen2}.ids     their ids for every corpus line (one line of space-separated ids per
                              corpus line, special tokens parsed);
  smollm2.ids                 SmolLM2-135M-Instruct's ids as transformers computes them from the GGUF
                              (AutoTokenizer.from_pretrained(dir, gguf_file=name));
  smollm2-digits.ids          the same vocabulary with the original SmolLM2 pre-tokenizer (Digits
                              individual, then ByteLevel), which is what llama.cpp's "smollm" means;
  pretokenize.jsonl           random strings dense in character-class changes, with the piece ends
                              (code point offsets) of each Split regex and of Digits, as tokenizers
                              cuts them: the scanners checked directly, not only through BPE ids;
  chat.jsonl                  50 conversations with the SmolLM2 ids of
                              apply_chat_template(..., add_generation_prompt=True, tokenize=True) and
                              the Llama-3 text rendered by jinja2 from the official template below.
The SmolLM2 vocabulary itself is not committed: the Swift tests read it from the GGUF that
`make fetch-model` caches in the ignored .cache/models/.
"""
import argparse
import json
import os
import random

import jinja2
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer

FIXTURES = "Tests/TokenizersTests/Fixtures"
DEFAULT_GGUF = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"  # make fetch-model

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Meta's Llama 3 Instruct chat template (tokenizer_config.json of Meta-Llama-3-8B-Instruct).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

HARD_CASES = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t\t\tindented", "a  b   c    d",
    "Hello world", " Hello world", "Hello  world", "Hello world ", "Hello world  ", "hello\nworld",
    "hello \nworld", "hello  \n  world", "line one\r\nline two\r\n", "trailing spaces   \n   ",
    "I'm sure you're right, it's what we'd've done; they'll see.",
    "I'M SURE YOU'RE RIGHT, IT'S WHAT WE'D'VE DONE; THEY'LL SEE.", "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D", "'Re 'rE 'lL", "'\u017ft x'\u017f 'st", "'\u212aelvin '\u212b", "don't DON'T Don'T", "''s '''", "'hello", " 'tis",
    "12345678901234567890", "3.14159265358979", "1,000,000", "x1y22z333w4444", " 42", "  42", "4 2",
    "٣٤٥ ۱۲۳ १२३ ½ ⅔ Ⅻ ①②③", "price: $19.99 (USD)", "v1.2.3-rc.4+build.567",
    "你好，世界！这是一个测试。", "日本語のテキストです。カタカナとひらがな。", "한국어 텍스트입니다.",
    "混合 English と日本語 and 中文 123",
    "😀😃😄 emoji", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "👍🏽 thumbs", "🇫🇷🇩🇪 flags", "a😀b", " 😀",
    "e\u0301 cafe\u0301 naïve", "Z\u0351\u0352\u0353a\u0354\u0355lgo", "\u0915\u094d\u0937 हिन्दी",
    "ﬁ ligature ß ẞ İstanbul", "Ελληνικά Кириллица עברית العربية",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|>assistant\n", "<|im_start", "im_start|>", "<|im_", "<||>", "<|endoftext|><|endoftext|>",
    "text<|endoftext|>more", " <|im_end|> ", "<|IM_START|>", "<|endoftext|", "<<|im_start|>>",
    "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "if x == y and not z:\n        pass  # comment", "const s = `${a}${b}`;", "<div class=\"a\">&amp;</div>",
    "SELECT * FROM t WHERE id IN (1, 2, 3);", "$ ls -la | grep '^d' > out.txt 2>&1",
    "{\"key\": [1, 2, {\"nested\": null}]}", "    \n    \n    x", "a\u00a0b\u2003c\u3000d", "\u200b\u200c\u200d",
    "\x00\x01\x1f\x7f", "\u0085next line", "\u2028\u2029", "\ufeffBOM", "Ω≈ç√∫˜µ≤≥÷", "\U0001d400\U0001d7d8",
    "....!!!???", "--- *** ___", " .", " . ", ". ", "a.b.c", "a\n\nb", "a \n\n b", "\n a", "\n\t a",
    "x" * 300, "thequickbrownfoxjumps" * 1000, " " * 64, "\n" * 20, "9" * 100, "ab" * 150, "中" * 200, "😀" * 40,
]

WORDS = ("the of and to in is was for that on as with by he it at from his an were are which this be or "
         "has had not but first one their its new after who they have her she two been other when there "
         "all during into school time may years more most only over city some world would where later up "
         "such used many can state about national out known university united then made reward model "
         "criteria evaluation pairwise judge policy gradient token sequence transformer attention").split()
CODE = ["def ", "return ", "if ", "else:", "for i in range(", "):", "self.", "x = ", "[0]", "{", "}", "();",
        "//", "/* ", " */", "->", "=>", "::", "#include <stdio.h>", "print(", "let ", "var ", "func ",
        "    ", "\t", "\n", "==", "!=", "+=", "&&", "||", "0x1F", "1e-5", "\"str\"", "'c'", "`t`"]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start", "|>", "<|", "<|im_end",
           "<|start_header_id|>", "<|eot_id|>", "<|begin_of_text|>"]
CJK = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコ"
HANGUL = "가나다라마바사아자차카타파하한국어텍스트입니다"
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏿", "❤️", "🎉", "🚀", "👩‍💻", "👨‍👩‍👧", "🏳️‍⚧️", "🇯🇵", "✅", "⭐", "🤖"]
MARKS = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u20dd", "\u0651", "\u05b7"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\n", "    ", "\u00a0", "\u3000"]
PUNCT = [".", ",", "!", "?", ";", ":", "'", "\"", "(", ")", "-", "—", "…", "«", "»", "'s", "'t", "'re", "'LL",
         "'D", "n't", "%", "$", "€", "@", "#", "&", "*", "/", "\\", "_", "~", "^"]
LATIN_EXTRA = ["café", "naïve", "Straße", "Ærøskøbing", "señor", "İstanbul", "ĳssel", "Ǆemal", "Ωmega", "мир",
               "привет", "σοφία", "שלום", "مرحبا", "नमस्ते", "ภาษาไทย", "ᏣᎳᎩ", "ⲁⲃⲅ"]


def fragment(rng):
    kind = rng.random()
    if kind < 0.35:
        word = rng.choice(WORDS)
        return word.capitalize() if rng.random() < 0.2 else (word.upper() if rng.random() < 0.05 else word)
    if kind < 0.45:
        return rng.choice(CODE)
    if kind < 0.55:
        return "".join(str(rng.randrange(10)) for _ in range(rng.choice([1, 1, 2, 3, 4, 5, 7, 12, 25])))
    if kind < 0.62:
        return "".join(rng.choice(CJK + KANA + HANGUL) for _ in range(rng.randrange(1, 8)))
    if kind < 0.67:
        return rng.choice(EMOJI)
    if kind < 0.71:
        return rng.choice(LATIN_EXTRA) + (rng.choice(MARKS) if rng.random() < 0.5 else "")
    if kind < 0.74:
        return rng.choice(SPECIAL)
    if kind < 0.87:
        return rng.choice(PUNCT)
    return rng.choice(SPACES)


def generated(rng, count):
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randrange(1, 40)):
            parts.append(fragment(rng))
            if rng.random() < 0.6:
                parts.append(" ")
        out.append("".join(parts))
    return out


def train(corpus, split_regex, vocab_size=1500):
    """A small byte-level BPE with the given Split regex (None: ByteLevel's own GPT-2 regex)."""
    tokenizer = Tokenizer(models.BPE())
    if split_regex is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def with_ignore_merges(tokenizer):
    """Llama 3's tokenizer.json sets ignore_merges: a word that is itself in the vocabulary is kept whole."""
    data = json.loads(tokenizer.to_str())
    data["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(data))


PRETOKENIZE_POOL = (list("abcXYZsStTrReEvVmMlLdDéÅßſıİ中日한αΩжЖ") + list("0123456789٣۱१²½Ⅻ①")
                    + list(" \t\n\r\u00a0\u3000\u2028\u0085\u000b\u000c\u001c\u001f\u200b")
                    + list("'''\u2019.,!?-_/\\()<>|$") + ["\u0301", "\u200d", "\ufe0f", "😀", "👍🏽", "\U0001d400"])


def pretokenize_cases(rng, count):
    """Short strings drawn from a pool that changes character class often, with each split's piece ends."""
    splits = {
        "gpt2": pre_tokenizers.Split(Regex(GPT2_SPLIT), behavior="isolated", invert=False),
        "llama3": pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        "qwen2": pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        "digits": pre_tokenizers.Digits(individual_digits=False),
        "individual_digits": pre_tokenizers.Digits(individual_digits=True),
    }
    rows = []
    for _ in range(count):
        text = "".join(rng.choice(PRETOKENIZE_POOL) for _ in range(rng.randrange(1, 24)))
        row = {"text": text}
        for name, split in splits.items():
            row[name] = [end for _, (_, end) in split.pre_tokenize_str(text)]
        rows.append(row)
    return rows


def write_ids(path, rows):
    with open(path, "w") as f:
        for ids in rows:
            f.write(" ".join(map(str, ids)) + "\n")


def conversations(rng):
    texts = ["What is 2 + 2?", "Explain BPE in one line.", "Write a haiku\nabout the sea.",
             "  leading and trailing spaces  ", "Is <|im_end|> a token?", "Say <|endoftext|> please.",
             "Compare response A and response B.\nCriteria:\n1. accuracy\n2. clarity",
             "日本語で答えてください。", "emoji 👍🏽 ok?", "code:\n```python\nprint('hi')\n```"]
    systems = ["You are a careful judge.", "Answer briefly.\nUse English.", "You grade answers from 1 to 10."]
    out = []
    for index in range(50):
        messages = []
        if index % 2 == 1:
            messages.append({"role": "system", "content": rng.choice(systems)})
        for turn in range(rng.randrange(1, 4)):
            messages.append({"role": "user", "content": rng.choice(texts)})
            if turn < 2 and rng.random() < 0.5:
                messages.append({"role": "assistant", "content": rng.choice(texts)})
        if messages[-1]["role"] == "assistant":
            messages.append({"role": "user", "content": rng.choice(texts)})
        out.append(messages)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", default=DEFAULT_GGUF)
    args = parser.parse_args()
    os.makedirs(FIXTURES, exist_ok=True)

    rng = random.Random(20261206)
    corpus = HARD_CASES + generated(rng, 2200)
    with open(f"{FIXTURES}/corpus.jsonl", "w") as f:
        for text in corpus:
            f.write(json.dumps(text, ensure_ascii=False) + "\n")

    training = corpus[len(HARD_CASES)::2]
    families = {"gpt2": train(training, None), "llama3": with_ignore_merges(train(training, LLAMA3_SPLIT)),
                "qwen2": train(training, QWEN2_SPLIT)}
    for name, tokenizer in families.items():
        tokenizer.save(f"{FIXTURES}/{name}.tokenizer.json")
        write_ids(f"{FIXTURES}/{name}.ids", [e.ids for e in tokenizer.encode_batch(corpus, add_special_tokens=False)])

    directory, name = os.path.split(args.gguf)
    smollm = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    write_ids(f"{FIXTURES}/smollm2.ids", [smollm.encode(text, add_special_tokens=False) for text in corpus])
    backend = Tokenizer.from_str(smollm.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    write_ids(f"{FIXTURES}/smollm2-digits.ids",
              [e.ids for e in backend.encode_batch(corpus, add_special_tokens=False)])

    with open(f"{FIXTURES}/pretokenize.jsonl", "w") as f:
        for row in pretokenize_cases(random.Random(31), 2000):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    llama3 = jinja2.Environment().from_string(LLAMA3_TEMPLATE)
    with open(f"{FIXTURES}/chat.jsonl", "w") as f:
        for messages in conversations(random.Random(7)):
            ids = smollm.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding, 4.x a list
                ids = ids["input_ids"]
            text = llama3.render(messages=messages, add_generation_prompt=True, bos_token="<|begin_of_text|>")
            f.write(json.dumps({"messages": messages, "smollm2_ids": list(ids), "llama3_text": text},
                               ensure_ascii=False) + "\n")
    print(f"{len(corpus)} corpus lines, {len(families)} trained tokenizers, SmolLM2 ids, 50 conversations")


if __name__ == "__main__":
    main()
