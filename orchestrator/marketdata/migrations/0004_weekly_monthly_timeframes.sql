-- Weekly and monthly bars (calendar-aligned: weeks open Monday 00:00 UTC, months on the 1st).
-- The new values are appended to each ENUM, which MariaDB applies in place without a table copy.
ALTER TABLE symbols
    MODIFY base_timeframe ENUM('1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w', '1mo') NOT NULL DEFAULT '5m';
ALTER TABLE bars
    MODIFY timeframe ENUM('1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w', '1mo') NOT NULL;
ALTER TABLE bar_revisions
    MODIFY timeframe ENUM('1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w', '1mo') NOT NULL;
