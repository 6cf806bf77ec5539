import ArgumentParser

/// The `cerm` command: one executable with a subcommand per job.
struct Cerm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cerm",
        abstract: "Distributed trainer for generative reward models (CE-RM) over ZeroMQ.",
        subcommands: [PipelineCommand.self, LaunchCommand.self, CoordinatorCommand.self, WorkerCommand.self, SFTCommand.self, CurateCommand.self,
                      EvalCommand.self, JudgeCommand.self, DataCommand.self, ConfigCommand.self, KeygenCommand.self, InspectCommand.self,
                      ExportCommand.self, ImportCommand.self, TokenizeCommand.self, GenerateCommand.self, StatusCommand.self, ReportCommand.self, BenchCommand.self,
                      // Hidden: run by other commands as a child (ChildProcessCheckpointProbe).
                      CheckpointProbeCommand.self,
                      // Hidden: the pretrained-model parity check of make test-pretrained.
                      CheckParityCommand.self])
}
