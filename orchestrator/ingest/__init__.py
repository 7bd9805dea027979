"""Bar ingestion: CSV/Parquet files and Polygon aggregates into the market-data store."""
