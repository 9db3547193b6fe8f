// The reference OpenID Provider for bench/run.py --reference: oidc-provider (v9, certified
// by the OpenID Foundation) configured like Logicredit Auth's bench clients, so that the
// token phases compare like with like on the same machine in the same run.
//
// TEST-ONLY. The interaction route below logs every authorization in as one fixed account
// and grants consent without asking anyone: a shortcut so that the harness can mint
// authorization codes. Never expose this server; it listens on 127.0.0.1 only.
//
//   node server.mjs --port P --clients clients.json
//
// Equivalent to our configuration: the same client metadata (private_key_jwt with the same
// public key, ES256), ES256 ID tokens and ES256 JWT access tokens for client_credentials,
// DPoP, introspection, refresh tokens without offline_access and rotated on every use,
// PKCE S256. One difference oidc-provider imposes: userinfo accepts only access tokens
// issued for userinfo, which it keeps opaque (stored in its adapter); so code-flow access
// tokens are opaque here, while ours are JWTs.
//
// Storage: oidc-provider's own in-memory adapter (in this process), with its LRU raised from
// the quick-start's 1,000 entries, which evicts live grants under a benchmark's load. It
// writes no database rows; ours writes PostgreSQL/SQLite rows (counted by the harness).
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, v, i, all) => (i % 2 ? acc : [...acc, [v.replace(/^--/, ''), all[i + 1]]]), []),
);
const port = Number(args.port);
const issuer = `http://127.0.0.1:${port}`;
const API = 'urn:logicredit:bench:api';
const ACCOUNT = 'bench-user';

// A fresh ES256 signing key per start, like ours (generated, never a fixed test key).
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const clients = JSON.parse(readFileSync(args.clients, 'utf8')).map((c) => ({
  client_id: c.client_id,
  redirect_uris: c.redirect_uris ?? [],
  grant_types: c.grant_types,
  response_types: c.response_types ?? [],
  token_endpoint_auth_method: c.token_endpoint_auth_method,
  token_endpoint_auth_signing_alg: 'ES256',
  id_token_signed_response_alg: 'ES256',
  jwks: c.jwks,
  scope: c.scope,
}));

const store = new LRU({ maxSize: 1_000_000 });

const provider = new Provider(issuer, {
  adapter: (model) => new MemoryAdapter(model, store),
  clients,
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['bench-only-cookie-key-not-a-secret'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'email', 'accounts:read'],
  enabledJWA: { dPoPSigningAlgValues: ['ES256'] },
  // Ours: 300 s tokens, 60 s codes, 10 min interactions; refresh tokens, grants and
  // sessions live as long as the login session (12 h absolute by default).
  ttl: {
    AccessToken: 300, ClientCredentials: 300, IdToken: 300, AuthorizationCode: 60, Interaction: 600,
    RefreshToken: 12 * 3600, Session: 12 * 3600, Grant: 12 * 3600,
  },
  // Ours: refresh tokens for every client with the grant (no offline_access), rotated on
  // every use.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Ours: active only to the client the token was issued to.
    introspection: { enabled: true, allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // client_credentials gets an RFC 9068 JWT (ES256) for the API, as ours does; the code
      // flow gets no resource, so its token works at userinfo (see the header).
      defaultResource: async (ctx) => (ctx.oidc.params?.grant_type === 'client_credentials' ? API : undefined),
      useGrantedResource: async () => false,
      getResourceServerInfo: async () => ({
        scope: 'accounts:read',
        audience: API,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: `${sub}@bench.example`, email_verified: true }),
  }),
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
});

const callback = provider.callback();

// TEST-ONLY auto login + consent (see the header).
async function interaction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    const grant = new provider.Grant({ accountId: ACCOUNT, clientId: details.params.client_id });
    grant.addOIDCScope(String(details.params.scope ?? 'openid'));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: ACCOUNT },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(e));
  }
}

http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) return void interaction(req, res);
  if (req.url === '/readyz') {
    res.writeHead(200);
    return void res.end('ok');
  }
  return callback(req, res);
}).listen(port, '127.0.0.1', () => console.log(`reference provider on ${issuer}`));
