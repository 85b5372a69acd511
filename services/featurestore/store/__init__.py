"""The feature store's persistence: Feast (online store, registry) and the offline parquet history.

- ``layout``: where the files live (Feast repo, offline datasets, training sets, faust data);
- ``feast_repo``: the Feast repository generated from the use-case specs;
- ``online``: online reads; ``online_writer``: where online writes run (this process or a child);
- ``sqlite``: Feast's SQLite online store with batched writes (a Feast custom store);
- ``offline``: append-only, deduplicated parquet datasets;
- ``rows``: the Arrow schemas of feature rows and labels;
- ``writer``: one micro-batch written durably, online and offline.
"""
