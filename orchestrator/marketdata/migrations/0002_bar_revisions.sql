-- One row per (symbol, timeframe) whose stored history was rewritten at or before its newest bar
-- (a corrected bar, a backfill). The bar-close engine polls it to know when incremental feature
-- state no longer matches the store and must be recomputed; appending new bars never touches it.
CREATE TABLE IF NOT EXISTS bar_revisions (
    symbol      VARCHAR(20) NOT NULL,
    timeframe   ENUM('1m', '5m', '15m', '30m', '1h', '4h', '1d') NOT NULL,
    revision    BIGINT UNSIGNED NOT NULL DEFAULT 1,
    oldest_ts   DATETIME    NOT NULL,
    revised_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (symbol, timeframe)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;
