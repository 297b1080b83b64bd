// A real OpenID Connect provider (panva's oidc-provider) for Postern's single sign-on tests.
//
//   node provider.mjs PORT ACCOUNTS_DIR
//
// Issuer http://127.0.0.1:PORT. One public native client, "postern-cli": authorization code
// with PKCE (S256, required) on any loopback port, and the device flow. People are the JSON
// files in ACCOUNTS_DIR (<login>.json = {"groups": [...]}), read at every login, so tests
// add their own; the development login form accepts any password for a known login.
import fs from 'node:fs';
import path from 'node:path';
import Provider from 'oidc-provider';

const [port, accountsDir] = [Number(process.argv[2]), process.argv[3]];
if (!port || !accountsDir) {
  console.error('usage: node provider.mjs PORT ACCOUNTS_DIR');
  process.exit(2);
}

function account(id) {
  if (!/^[A-Za-z0-9_.-]{1,63}$/.test(id)) return undefined;
  const file = path.join(accountsDir, `${id}.json`);
  if (!fs.existsSync(file)) return undefined;
  const data = JSON.parse(fs.readFileSync(file, 'utf8'));
  return {
    accountId: id,
    async claims() {
      return { sub: id, preferred_username: id, groups: data.groups ?? [] };
    },
  };
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'postern-cli',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'groups'],
  claims: { openid: ['sub'], profile: ['preferred_username'], groups: ['groups'] },
  // Scope claims go into the ID token (Postern reads only the ID token).
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
  },
  async findAccount(_ctx, id) {
    return account(id);
  },
  // Consent is implied: the tests' people always agree.
  async loadExistingGrant(ctx) {
    const { client } = ctx.oidc;
    const accountId = ctx.oidc.session?.accountId;
    if (!client || !accountId) return undefined;
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId });
    grant.addOIDCScope('openid profile groups');
    grant.addOIDCClaims(['preferred_username', 'groups']);
    await grant.save();
    return grant;
  },
  ttl: { DeviceCode: 600, AccessToken: 600, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc provider listening on http://127.0.0.1:${port}`);
});
