-- Symbols and OHLCV bars. Prices are exact decimals; `ts` is the bar's open time in UTC
-- (DATETIME, so no session time-zone conversion and no 2038 limit).
CREATE TABLE IF NOT EXISTS symbols (
    symbol          VARCHAR(20)    NOT NULL,
    asset_class     ENUM('crypto', 'forex', 'metal', 'equity', 'index', 'commodity') NOT NULL,
    tick_size       DECIMAL(20, 10) NOT NULL,
    base_timeframe  ENUM('1m', '5m', '15m', '30m', '1h', '4h', '1d') NOT NULL DEFAULT '5m',
    description     VARCHAR(200)   NOT NULL DEFAULT '',
    created_at      DATETIME(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (symbol),
    CONSTRAINT ck_symbols_tick CHECK (tick_size > 0)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;

-- The clustered primary key (symbol, timeframe, ts) serves both "latest N" (backward scan)
-- and range scans; ix_bars_ts serves cross-symbol time queries.
CREATE TABLE IF NOT EXISTS bars (
    symbol     VARCHAR(20)     NOT NULL,
    timeframe  ENUM('1m', '5m', '15m', '30m', '1h', '4h', '1d') NOT NULL,
    ts         DATETIME        NOT NULL,
    open       DECIMAL(20, 10) NOT NULL,
    high       DECIMAL(20, 10) NOT NULL,
    low        DECIMAL(20, 10) NOT NULL,
    close      DECIMAL(20, 10) NOT NULL,
    volume     DECIMAL(28, 8)  NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts),
    KEY ix_bars_ts (ts),
    CONSTRAINT fk_bars_symbol FOREIGN KEY (symbol) REFERENCES symbols (symbol),
    CONSTRAINT ck_bars_prices CHECK (low > 0 AND high >= GREATEST(open, close) AND low <= LEAST(open, close)),
    CONSTRAINT ck_bars_volume CHECK (volume >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;
