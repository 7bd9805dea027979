-- Backtest and walk-forward runs submitted as jobs. The row is the durable record any replica
-- reads (status, progress, result); Redis/SAQ only carries the work to a worker. `attempts` counts
-- the workers that started the run, bounded by `max_attempts` when workers die mid-run; a newer
-- attempt fences off writes of an older one (updates name the attempt they belong to).
CREATE TABLE IF NOT EXISTS backtest_runs (
    id                CHAR(16)          NOT NULL,
    kind              ENUM('backtest', 'walk_forward') NOT NULL,
    parameters        LONGTEXT          NOT NULL,
    status            ENUM('queued', 'running', 'done', 'failed', 'cancelled') NOT NULL DEFAULT 'queued',
    phase             VARCHAR(32)       NOT NULL DEFAULT 'queued',
    progress          DOUBLE            NOT NULL DEFAULT 0,
    attempts          SMALLINT UNSIGNED NOT NULL DEFAULT 0,
    max_attempts      SMALLINT UNSIGNED NOT NULL,
    cancel_requested  BOOLEAN           NOT NULL DEFAULT FALSE,
    worker            VARCHAR(128)      NULL,
    created_at        DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    started_at        DATETIME(6)       NULL,
    finished_at       DATETIME(6)       NULL,
    updated_at        DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    error_status      SMALLINT UNSIGNED NULL,
    error_body        LONGTEXT          NULL,
    result            LONGTEXT          NULL,
    PRIMARY KEY (id),
    KEY ix_backtest_runs_created (created_at, id),
    KEY ix_backtest_runs_status_created (status, created_at, id),
    KEY ix_backtest_runs_status_updated (status, updated_at),
    CONSTRAINT ck_backtest_runs_parameters CHECK (JSON_VALID(parameters)),
    CONSTRAINT ck_backtest_runs_error CHECK (error_body IS NULL OR JSON_VALID(error_body)),
    CONSTRAINT ck_backtest_runs_progress CHECK (progress BETWEEN 0 AND 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
