-- Retraining runs share the durable job table with backtests: the same claims, heartbeats,
-- retries and cancels (orchestrator/jobs). The set a retrain is for is in its parameters.
ALTER TABLE backtest_runs
    MODIFY kind ENUM('backtest', 'walk_forward', 'retrain') NOT NULL;
