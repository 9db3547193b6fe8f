-- pgbench script: the write transaction of one successful password login, as the service
-- runs it on PostgreSQL (UnitOfWork::commit): the session row, then the audit records
-- appended to one of the audit trail's chains under that chain's advisory lock
-- (src/storage/db/audit.rs, AdvisoryLock::audit_chain), which is held until COMMIT
-- (including the WAL flush): read the chain's head, draw two trail positions from the
-- sequence (no lock), insert both records. `-D chains=N` is AUDIT_CHAINS: with 1, every
-- audited change of the deployment queues for one lock (the trail before partitioning);
-- with N, logins of different users take different locks. bench/run.py runs it against
-- the benchmark database (dropped afterwards):
--   pgbench -n -M extended -c 8 -j 2 -T 15 -D chains=16 -f bench/audit_chain.sql <bench db>
\set chain random(0, :chains - 1)
SELECT id AS uid FROM users LIMIT 1 \gset
BEGIN;
INSERT INTO sessions (id, token_hash, user_id, state, created_at, last_seen_at,
                      absolute_expires_at, mfa_verified_at, ip, user_agent)
VALUES (gen_random_uuid(), md5(random()::text) || md5(random()::text), :uid, 'active',
        0, 0, 0, NULL, '127.0.0.1', 'pgbench');
SELECT pg_advisory_xact_lock(7263541000 + :chain);
SELECT COALESCE(MAX(chain_seq), 0) AS pos, COALESCE(MAX(hash), 'genesis') AS hash
  FROM (SELECT chain_seq, hash FROM audit_log WHERE chain = :chain
        ORDER BY chain_seq DESC LIMIT 1) head \gset
SELECT nextval('audit_log_position') AS s1, nextval('audit_log_position') AS s2 \gset
INSERT INTO audit_log (seq, chain, chain_seq, id, occurred_at, event, user_id, actor_id, ip,
                       user_agent, request_id, metadata, prev_hash, hash, key_id)
VALUES (:s1, :chain, :pos + 1, gen_random_uuid(), 0, 'session.created', :uid, NULL,
        '127.0.0.1', 'pgbench', 'pgbench', '{"session_id":"x","state":"active"}', :hash,
        md5(random()::text) || md5(random()::text), 'bench'),
       (:s2, :chain, :pos + 2, gen_random_uuid(), 0, 'login.success', :uid, NULL,
        '127.0.0.1', 'pgbench', 'pgbench', '{"method":"password"}', 'x',
        md5(random()::text) || md5(random()::text), 'bench');
COMMIT;
