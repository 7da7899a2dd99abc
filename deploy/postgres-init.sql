-- Runs once, when the PostgreSQL volume is first created. The MLflow tracking server and
-- the registry server keep separate databases (and separate migrations) on one instance.
CREATE DATABASE registry;
