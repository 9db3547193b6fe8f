-- pgbench script: the write transaction of one successful password login, as the service
-- runs it on PostgreSQL (UnitOfWork::commit): the session row, then the audit records
-- appended under the chain's advisory lock (src/storage/db/audit.rs, CHAIN_LOCK_KEY),
-- which is held until COMMIT (including the WAL flush). Every audited change in the whole
-- deployment takes this one lock, so its throughput bounds logins/s however many
-- instances run. bench/run.py runs it against the benchmark database (dropped afterwards):
--   pgbench -n -M extended -c 8 -j 2 -T 15 -f bench/audit_chain.sql <bench database>
SELECT id AS uid FROM users LIMIT 1 \gset
BEGIN;
INSERT INTO sessions (id, token_hash, user_id, state, created_at, last_seen_at,
                      absolute_expires_at, mfa_verified_at, ip, user_agent)
VALUES (gen_random_uuid(), md5(random()::text) || md5(random()::text), :uid, 'active',
        0, 0, 0, NULL, '127.0.0.1', 'pgbench');
SELECT pg_advisory_xact_lock(7263540002);
SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1 \gset
INSERT INTO audit_log (seq, id, occurred_at, event, user_id, actor_id, ip, user_agent,
                       request_id, metadata, prev_hash, hash)
VALUES (:seq + 1, gen_random_uuid(), 0, 'session.created', :uid, NULL, '127.0.0.1',
        'pgbench', 'pgbench', '{"session_id":"x","state":"active"}', :hash,
        md5(random()::text) || md5(random()::text));
INSERT INTO audit_log (seq, id, occurred_at, event, user_id, actor_id, ip, user_agent,
                       request_id, metadata, prev_hash, hash)
VALUES (:seq + 2, gen_random_uuid(), 0, 'login.success', :uid, NULL, '127.0.0.1',
        'pgbench', 'pgbench', '{"method":"password"}', 'x',
        md5(random()::text) || md5(random()::text));
COMMIT;
