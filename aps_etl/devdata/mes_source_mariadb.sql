-- The customer's source database in its MariaDB/MySQL form: the same tables, columns,
-- primary keys, foreign keys, NOT NULLs and CHECK constraints as mes_source.sql (the
-- PostgreSQL contract), which stays the reference. Written by hand, kept in step by
-- aps_etl_tests/unit/test_mariadb_contract.py (both engines refuse the same bad rows,
-- and their catalogs list the same columns and keys).
--
-- Types, where PostgreSQL's have no MariaDB twin:
--   timestamptz     -> DATETIME(6): the plant's wall-clock time in Asia/Seoul (UTC+09:00,
--                      no DST), microseconds kept; an instant is the value at +09:00
--   boolean         -> TINYINT(1) CHECK (col IN (0, 1))
--   text            -> VARCHAR(64) for ids and codes (keys included), VARCHAR(255) for names
--                      and free text; utf8mb4 with utf8mb4_nopad_bin: exact comparison as in
--                      PostgreSQL (case- and trailing-space-sensitive)
--   numeric(p, s)   -> DECIMAL(p, s); integer, bigint, date: the same
-- Multi-column CHECKs are table constraints (MariaDB's column constraints see one column).
-- The server runs STRICT (sql_mode): a bad value is refused, never coerced.
-- A business day D is the local calendar day: [D 00:00, D+1 00:00) plant time.

-- Master data ---------------------------------------------------------------

CREATE TABLE product (
    product_id    VARCHAR(64) NOT NULL,
    product_name  VARCHAR(255) NOT NULL,
    route_id      VARCHAR(64) NOT NULL,
    lot_size      INTEGER NOT NULL CHECK (lot_size > 0),
    PRIMARY KEY (product_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Ordered process steps of a route. Each step is served by one equipment group.
CREATE TABLE route_step (
    route_id       VARCHAR(64) NOT NULL,
    step_seq       INTEGER NOT NULL CHECK (step_seq > 0),
    step_id        VARCHAR(64) NOT NULL,
    process_id     VARCHAR(64) NOT NULL,    -- the kind of operation (PHOTO, ETCH, ...)
    eqp_group_id   VARCHAR(64) NOT NULL,
    std_cycle_min  DECIMAL(10, 2) NOT NULL CHECK (std_cycle_min > 0),
    PRIMARY KEY (route_id, step_seq),
    UNIQUE (route_id, step_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Equipment; the members of one eqp_group_id work in parallel on the same steps and
-- share one process_id.
CREATE TABLE equipment (
    equipment_id       VARCHAR(64) NOT NULL,
    eqp_group_id       VARCHAR(64) NOT NULL,
    process_id         VARCHAR(64) NOT NULL,
    capacity_per_hour  DECIMAL(10, 2) NOT NULL CHECK (capacity_per_hour >= 0),  -- units per hour
    active             TINYINT(1) NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    PRIMARY KEY (equipment_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- MES facts -----------------------------------------------------------------

-- Every transaction on a lot; see mes_source.sql for the event types and lot states.
CREATE TABLE lot_history (
    event_id     BIGINT NOT NULL,
    lot_id       VARCHAR(64) NOT NULL,
    product_id   VARCHAR(64) NOT NULL,
    event_type   VARCHAR(64) NOT NULL CHECK (event_type IN
                   ('CREATE','TRACK_IN','TRACK_OUT','COMPLETE','HOLD','RELEASE','REWORK','SCRAP')),
    event_ts     DATETIME(6) NOT NULL,
    step_seq     INTEGER NOT NULL,
    step_id      VARCHAR(64) NOT NULL,
    equipment_id VARCHAR(64),                -- null except on TRACK_IN / TRACK_OUT
    lot_status   VARCHAR(64) NOT NULL
                   CHECK (lot_status IN ('WAIT','RUN','HOLD','SCRAPPED','COMPLETED')),
    qty          INTEGER NOT NULL CHECK (qty >= 0),
    hold_reason  VARCHAR(255),               -- null except on HOLD
    updated_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (event_id),
    -- Not in the customer's contract, needed on MariaDB: the daily extract's lot_history
    -- query keeps the lots still alive at the start of D with a NOT EXISTS over the same
    -- table, which MariaDB 10.11 runs as a dependent subquery (PostgreSQL as a hash
    -- anti-join). Without this index a 1M-row day's read did not end in 8 minutes.
    INDEX lot_history_lot_end (lot_id, event_type, event_ts),
    FOREIGN KEY (product_id) REFERENCES product (product_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- One row per finished pass of a lot through a step (written at TRACK_OUT / COMPLETE).
CREATE TABLE process_result (
    result_id     BIGINT NOT NULL,
    lot_id        VARCHAR(64) NOT NULL,
    product_id    VARCHAR(64) NOT NULL,
    step_seq      INTEGER NOT NULL,
    step_id       VARCHAR(64) NOT NULL,
    process_id    VARCHAR(64) NOT NULL,
    equipment_id  VARCHAR(64) NOT NULL,
    track_in_ts   DATETIME(6) NOT NULL,
    track_out_ts  DATETIME(6) NOT NULL,
    in_qty        INTEGER NOT NULL CHECK (in_qty >= 0),
    out_qty       INTEGER NOT NULL CHECK (out_qty >= 0),
    scrap_qty     INTEGER NOT NULL CHECK (scrap_qty >= 0),
    is_rework     TINYINT(1) NOT NULL CHECK (is_rework IN (0, 1)),
    updated_at    DATETIME(6) NOT NULL,
    PRIMARY KEY (result_id),
    CHECK (track_out_ts >= track_in_ts),
    FOREIGN KEY (product_id) REFERENCES product (product_id),
    FOREIGN KEY (equipment_id) REFERENCES equipment (equipment_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- State intervals of each equipment; end_ts null: the interval is still open.
CREATE TABLE equipment_event (
    event_id      BIGINT NOT NULL,
    equipment_id  VARCHAR(64) NOT NULL,
    state         VARCHAR(64) NOT NULL CHECK (state IN ('RUN','IDLE','DOWN','PM')),
    start_ts      DATETIME(6) NOT NULL,
    end_ts        DATETIME(6),
    reason_code   VARCHAR(64),               -- set for DOWN and PM
    updated_at    DATETIME(6) NOT NULL,
    PRIMARY KEY (event_id),
    CHECK (end_ts IS NULL OR end_ts > start_ts),
    FOREIGN KEY (equipment_id) REFERENCES equipment (equipment_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- APS plan results ----------------------------------------------------------

-- One execution of the APS engine. Several runs a day; only COMPLETED runs are plans.
CREATE TABLE plan_run (
    run_id        VARCHAR(64) NOT NULL,
    base_date     DATE NOT NULL,             -- the first day the plan covers
    horizon_days  INTEGER NOT NULL CHECK (horizon_days > 0),
    created_at    DATETIME(6) NOT NULL,
    status        VARCHAR(64) NOT NULL CHECK (status IN ('RUNNING','COMPLETED','FAILED')),
    PRIMARY KEY (run_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE plan_production (
    run_id       VARCHAR(64) NOT NULL,
    plan_date    DATE NOT NULL,
    product_id   VARCHAR(64) NOT NULL,
    step_id      VARCHAR(64) NOT NULL,
    process_id   VARCHAR(64) NOT NULL,
    planned_qty  INTEGER NOT NULL CHECK (planned_qty >= 0),
    PRIMARY KEY (run_id, plan_date, product_id, step_id),
    FOREIGN KEY (run_id) REFERENCES plan_run (run_id),
    FOREIGN KEY (product_id) REFERENCES product (product_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE plan_equipment (
    run_id            VARCHAR(64) NOT NULL,
    plan_date         DATE NOT NULL,
    equipment_id      VARCHAR(64) NOT NULL,
    planned_qty       INTEGER NOT NULL CHECK (planned_qty >= 0),
    planned_load_min  DECIMAL(10, 2) NOT NULL CHECK (planned_load_min BETWEEN 0 AND 1440),
    PRIMARY KEY (run_id, plan_date, equipment_id),
    FOREIGN KEY (run_id) REFERENCES plan_run (run_id),
    FOREIGN KEY (equipment_id) REFERENCES equipment (equipment_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;
