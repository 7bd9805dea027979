-- When each symbol trades, derived from its own stored bars (marketdata/sessions.py): the bar-open
-- minutes of its week at the stored timeframe, its sessions a week and the bars of an average
-- session, which turn horizons in trading time into bar counts. Rewritten after every ingest.
CREATE TABLE IF NOT EXISTS symbol_calendars (
    symbol             VARCHAR(20)       NOT NULL,
    timeframe          ENUM('1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w', '1mo') NOT NULL,
    open_minutes       MEDIUMTEXT        NOT NULL,  -- JSON list, minutes from Monday 00:00 UTC
    sessions_per_week  TINYINT UNSIGNED  NOT NULL,
    session_bars       INT UNSIGNED      NOT NULL,
    derived_from       DATETIME          NOT NULL,  -- first and last bar read
    derived_through    DATETIME          NOT NULL,
    updated_at         DATETIME(6)       NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                                         ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (symbol, timeframe),
    CONSTRAINT fk_calendars_symbol FOREIGN KEY (symbol) REFERENCES symbols (symbol)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;
