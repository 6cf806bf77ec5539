/// The rollout worker.
