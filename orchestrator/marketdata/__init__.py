"""Market-data store: MariaDB/MySQL schema, asyncmy pool, bar queries and resampling."""
