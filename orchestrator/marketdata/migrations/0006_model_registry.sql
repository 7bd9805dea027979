-- The model registry: one row per exported version of a model set (the ensemble a timeframe is
-- served by: signal_ensemble, signal_ensemble_1h, ...), its data, its card's numbers and where it
-- stands in the champion / challenger cycle. Each change of status is one transaction that also
-- appends to model_version_events, so the history says who moved what, when and why.
CREATE TABLE IF NOT EXISTS model_versions (
    model_set           VARCHAR(64)       NOT NULL,
    version             INT UNSIGNED      NOT NULL,
    timeframe           VARCHAR(8)        NOT NULL,
    symbols             LONGTEXT          NOT NULL,
    status              ENUM('candidate', 'challenger', 'champion', 'retired', 'rejected') NOT NULL,
    created_at          DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    trained_through     DATETIME(6)       NULL,
    data_from           DATETIME(6)       NULL,
    data_to             DATETIME(6)       NULL,
    feature_fingerprint VARCHAR(64)       NOT NULL,
    metrics             LONGTEXT          NOT NULL,
    decision            LONGTEXT          NULL,
    status_changed_at   DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    status_reason       VARCHAR(2000)     NOT NULL DEFAULT '',
    PRIMARY KEY (model_set, version),
    KEY ix_model_versions_status (model_set, status),
    CONSTRAINT ck_model_versions_symbols CHECK (JSON_VALID(symbols)),
    CONSTRAINT ck_model_versions_metrics CHECK (JSON_VALID(metrics)),
    CONSTRAINT ck_model_versions_decision CHECK (decision IS NULL OR JSON_VALID(decision))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS model_version_events (
    id           BIGINT UNSIGNED   NOT NULL AUTO_INCREMENT,
    model_set    VARCHAR(64)       NOT NULL,
    version      INT UNSIGNED      NOT NULL,
    from_status  VARCHAR(16)       NULL,
    to_status    VARCHAR(16)       NOT NULL,
    at           DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    actor        VARCHAR(128)      NOT NULL,
    reason       VARCHAR(2000)     NOT NULL,
    PRIMARY KEY (id),
    KEY ix_model_version_events_set (model_set, id),
    CONSTRAINT fk_model_version_events_version FOREIGN KEY (model_set, version)
        REFERENCES model_versions (model_set, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
