"""The state database's schema: one migration per version (``PRAGMA user_version``), applied in
order by ``store.Store``; a migration once released is never changed, only followed by another."""

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE models (
        name TEXT PRIMARY KEY, id TEXT UNIQUE NOT NULL, digest TEXT NOT NULL, backend TEXT NOT NULL,
        versions TEXT NOT NULL, size INTEGER NOT NULL, source TEXT NOT NULL, added_at REAL NOT NULL);
    CREATE TABLE pipelines (
        name TEXT PRIMARY KEY COLLATE NOCASE, id TEXT UNIQUE NOT NULL, definition TEXT NOT NULL,
        added_at REAL NOT NULL);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, name TEXT NOT NULL, priority TEXT NOT NULL,
        state TEXT NOT NULL, status TEXT, reason TEXT, instance TEXT, models TEXT,
        created_at REAL NOT NULL, started_at REAL, stopped_at REAL);
    CREATE INDEX jobs_by_state ON jobs(state, created_at);
    CREATE TABLE operators (
        job_id TEXT NOT NULL REFERENCES jobs(id), name TEXT NOT NULL, position INTEGER NOT NULL,
        state TEXT NOT NULL, reason TEXT, exit_code INTEGER, started_at REAL, stopped_at REAL,
        PRIMARY KEY (job_id, name));
    CREATE TABLE children (
        pid INTEGER PRIMARY KEY, create_time REAL NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL);
    """,
    # 2: earlier revisions of each model, kept for rollback
    """
    CREATE TABLE model_revisions (
        name TEXT NOT NULL, digest TEXT NOT NULL, backend TEXT NOT NULL, versions TEXT NOT NULL,
        size INTEGER NOT NULL, source TEXT NOT NULL, added_at REAL NOT NULL, replaced_at REAL NOT NULL,
        PRIMARY KEY (name, digest));
    """,
    # 3: what loading each model revision took, per device kind ("cpu" or "gpu")
    """
    CREATE TABLE model_costs (
        name TEXT NOT NULL, digest TEXT NOT NULL, device TEXT NOT NULL, loads INTEGER NOT NULL,
        load_seconds REAL NOT NULL, memory_bytes INTEGER NOT NULL, measured_at REAL NOT NULL,
        PRIMARY KEY (name, digest, device));
    """,
    # 4: metadata of models, pipelines, jobs and payloads (Clara's, keys case-insensitive: ``folded``);
    #    jobs created through the API are held until started
    """
    CREATE TABLE metadata (
        kind TEXT NOT NULL, owner TEXT NOT NULL, folded TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (kind, owner, folded));
    ALTER TABLE jobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: the size of a finished job's directory, measured once, for removing finished jobs by size
    """
    ALTER TABLE jobs ADD COLUMN size INTEGER;
    """,
    # 6: what grows with finished jobs is read through indexes and running totals, not scans:
    #    job counts and bytes per (state, status) kept by triggers; finished jobs oldest first;
    #    finished jobs not yet measured
    """
    CREATE TABLE job_totals (
        state TEXT NOT NULL, status TEXT NOT NULL, jobs INTEGER NOT NULL, bytes INTEGER NOT NULL,
        PRIMARY KEY (state, status));
    INSERT INTO job_totals SELECT state, coalesce(status, ''), count(*), coalesce(sum(size), 0) FROM jobs GROUP BY 1, 2;
    CREATE TRIGGER job_totals_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO job_totals VALUES (NEW.state, coalesce(NEW.status, ''), 1, coalesce(NEW.size, 0))
        ON CONFLICT (state, status) DO UPDATE SET jobs = jobs + 1, bytes = bytes + excluded.bytes;
    END;
    CREATE TRIGGER job_totals_delete AFTER DELETE ON jobs BEGIN
        UPDATE job_totals SET jobs = jobs - 1, bytes = bytes - coalesce(OLD.size, 0)
        WHERE state = OLD.state AND status = coalesce(OLD.status, '');
    END;
    CREATE TRIGGER job_totals_update AFTER UPDATE OF state, status, size ON jobs BEGIN
        UPDATE job_totals SET jobs = jobs - 1, bytes = bytes - coalesce(OLD.size, 0)
        WHERE state = OLD.state AND status = coalesce(OLD.status, '');
        INSERT INTO job_totals VALUES (NEW.state, coalesce(NEW.status, ''), 1, coalesce(NEW.size, 0))
        ON CONFLICT (state, status) DO UPDATE SET jobs = jobs + 1, bytes = bytes + excluded.bytes;
    END;
    CREATE INDEX jobs_by_stop ON jobs(state, stopped_at, id);
    CREATE INDEX jobs_unmeasured ON jobs(id) WHERE state = 'STOPPED' AND size IS NULL;
    """,
]
