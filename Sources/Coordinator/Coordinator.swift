/// The coordinator: scheduler, learner, checkpoints and monitoring.
