"""aps-etl: MES results and APS plans -> S3 Parquet lake -> APS inputs and KPIs -> PostgreSQL."""
