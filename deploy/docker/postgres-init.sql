-- One database per service that keeps state in SQL (each owns its own; none reads another's).
-- Run once by the postgres image on an empty data volume (docker-compose.yml).
CREATE DATABASE registry;
CREATE DATABASE trainer;
CREATE DATABASE evaluator;
CREATE DATABASE monitor;
