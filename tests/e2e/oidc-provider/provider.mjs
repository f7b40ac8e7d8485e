// A real third-party authorization server for tokengate's end-to-end tests: oidc-provider
// (https://github.com/panva/node-oidc-provider, OpenID Certified) with the client_credentials
// grant, RFC 8707 resource indicators, RFC 9068 JWT access tokens, opaque access tokens,
// RFC 7662 introspection and RFC 7009 revocation. Development only: plain HTTP on loopback,
// in-memory storage, fixed client secrets.
//
//   node provider.mjs --port PORT --keys FILE     (or env OIDC_PORT / OIDC_KEYS)
//
// PORT 0 picks a free port. FILE is a private JWKS; it is generated (RS256 + ES256, fresh
// kids) when it does not exist, so a test rotates keys by restarting on the same port with a
// new file name. Prints exactly one line `ready http://127.0.0.1:PORT` (the issuer) on stdout
// once listening. Exits on SIGTERM, SIGINT, or when stdin closes (the parent test died).
//
// Clients (all client_secret_basic; secrets are test fixtures):
//   jwt-client    / jwt-secret     tokens for RESOURCE are RFC 9068 JWTs (aud = RESOURCE)
//   opaque-client / opaque-secret  tokens for RESOURCE are opaque (introspect them)
//   rs-client     / rs-secret      the resource server: may introspect any token; no grant
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const RESOURCE = 'https://api.example/';
const RESOURCE_SCOPES = 'read write';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PORT },
    keys: { type: 'string', default: process.env.OIDC_KEYS },
  },
});
if (args.port === undefined || args.keys === undefined || !/^\d+$/.test(args.port)) {
  console.error('usage: node provider.mjs --port PORT --keys JWKS_FILE (or env OIDC_PORT, OIDC_KEYS)');
  process.exit(64);
}

/** The private JWKS in `file`, created with a fresh RSA and P-256 key pair if it is missing. */
function loadOrCreateKeys(file) {
  if (!fs.existsSync(file)) {
    const tag = crypto.randomBytes(6).toString('hex');
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    const jwks = {
      keys: [
        { ...rsa, kid: `rsa-${tag}`, alg: 'RS256', use: 'sig' },
        { ...ec, kid: `ec-${tag}`, alg: 'ES256', use: 'sig' },
      ],
    };
    // `wx`: two processes racing on the same path cannot both write it.
    fs.writeFileSync(file, JSON.stringify(jwks), { mode: 0o600, flag: 'wx' });
  }
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

const client = (id, secret, scope, grantTypes = ['client_credentials']) => ({
  client_id: id,
  client_secret: secret,
  grant_types: grantTypes,
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope,
});

const configuration = {
  clients: [
    client('jwt-client', 'jwt-secret', RESOURCE_SCOPES),
    client('opaque-client', 'opaque-secret', RESOURCE_SCOPES),
    // The resource server only calls introspection: it gets no tokens of its own.
    client('rs-client', 'rs-secret', undefined, []),
  ],
  // A client's `scope` metadata may name only scopes the server knows.
  scopes: ['openid', ...RESOURCE_SCOPES.split(' ')],
  jwks: loadOrCreateKeys(args.keys),
  // Only the client_credentials grant is used, so no cookie is ever set; a random key keeps the
  // provider from warning about its default development cookie keys.
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    // The login/consent dev UI is for authorization_code; nothing here needs it.
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The default lets every authenticated client introspect every token. Here: the
      // resource server, and a client its own tokens.
      allowedPolicy: async (ctx, caller, token) => caller.clientId === 'rs-client' || caller.clientId === token.clientId,
    },
    // The default policy: a client may revoke only its own tokens.
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` parameter → no resource server → an opaque token without audience.
      defaultResource: async () => undefined,
      getResourceServerInfo: async (ctx, indicator, caller) => {
        if (indicator !== RESOURCE || caller.clientId === 'rs-client') {
          throw new errors.InvalidTarget();
        }
        const jwt = caller.clientId === 'jwt-client';
        return {
          audience: RESOURCE,
          scope: RESOURCE_SCOPES,
          accessTokenTTL: 600,
          accessTokenFormat: jwt ? 'jwt' : 'opaque',
          ...(jwt ? { jwt: { sign: { alg: 'RS256' } } } : {}),
        };
      },
    },
  },
};

// Listen first, so that port 0 is resolved before the issuer (which contains the port) is fixed.
const server = http.createServer();
server.on('error', (err) => {
  console.error(`provider.mjs: ${err.message}`);
  process.exit(1);
});
server.listen(Number(args.port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, err) => console.error('provider.mjs: server_error', err));
  server.on('request', provider.callback());
  console.log(`ready ${issuer}`);
});

const stop = () => {
  server.closeAllConnections();
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
