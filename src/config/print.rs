//! The effective configuration as YAML in the file schema, for `tokengate check-config`.
//! Every default is spelled out; secrets are printed as `<redacted>`.

use super::raw::{
    HeaderMapping, OneOrMany, RawAccessLog, RawAudienceCheck, RawAuth, RawCertificate, RawClaimRule, RawClientAuth,
    RawClientAuthMethod, RawConfig, RawDecision, RawEncodedSlashes, RawIdentity, RawIntrospection,
    RawIntrospectionProtocol, RawIssuer, RawJwks, RawMode, RawPaths, RawProtectedResource, RawRoute, RawScopeMatch,
    RawSecret, RawServer, RawTls, RawTokenCache, RawTokens, RawUpstream,
};
use super::{
    AudienceCheck, ClaimTest, ClientAuth, ClientAuthMethod, Config, IdentityValue, Introspection,
    IntrospectionProtocol, Issuer, KeySource, RouteAuth, ScopeMatch, TokenMode, UpstreamSettings,
};

/// What `render_effective` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// The effective config as YAML that `load` accepts again (once `<redacted>` is replaced by the
/// secret, e.g. with `${IDP_SECRET}`).
pub fn render_effective(config: &Config) -> String {
    let yaml = serde_norway::to_string(&to_raw(config)).expect("the raw config always serializes");
    format!("# effective tokengate configuration (defaults resolved, env applied)\n{yaml}")
}

fn to_raw(c: &Config) -> RawConfig {
    RawConfig {
        listen: Some(c.listen.to_string()),
        plain_listen: c.plain_listen.map(|a| a.to_string()),
        tls: c.tls.as_ref().map(|t| RawTls {
            cert: None,
            key: None,
            certificates: Some(
                t.certificates
                    .iter()
                    .map(|p| RawCertificate {
                        cert: Some(p.cert.display().to_string()),
                        key: Some(p.key.display().to_string()),
                    })
                    .collect(),
            ),
            client_ca: t.client_ca.as_ref().map(|p| p.display().to_string()),
            client_auth: t.client_auth.map(|a| match a {
                ClientAuth::Required => RawClientAuth::Required,
                ClientAuth::Optional => RawClientAuth::Optional,
            }),
        }),
        admin_listen: Some(c.admin_listen.to_string()),
        realm: Some(c.realm.clone()),
        server: Some(RawServer {
            header_read_timeout: Some(c.server.header_read_timeout),
            drain_delay: Some(c.server.drain_delay),
            shutdown_grace: Some(c.server.shutdown_grace),
            max_header_bytes: Some(c.server.max_header_bytes),
            worker_threads: c.server.worker_threads,
            max_connections: Some(c.server.max_connections),
            idle_timeout: Some(c.server.idle_timeout),
            body_read_timeout: Some(c.server.body_read_timeout),
            http2_max_concurrent_streams: Some(c.server.http2_max_concurrent_streams),
            http2_keep_alive_interval: Some(c.server.http2_keep_alive_interval),
            http2_keep_alive_timeout: Some(c.server.http2_keep_alive_timeout),
            tunnel_idle_timeout: Some(c.server.tunnel_idle_timeout),
        }),
        upstream: c.upstream.as_ref().map(upstream),
        upstreams: (!c.upstreams.is_empty())
            .then(|| c.upstreams.iter().map(|(name, u)| (name.clone(), upstream(u))).collect()),
        tokens: Some(RawTokens {
            query: Some(c.tokens.allow_query),
            form_body: Some(c.tokens.allow_form_body),
            max_bytes: Some(c.tokens.max_token_bytes),
        }),
        jwks: Some(RawJwks {
            min_refresh: Some(c.jwks.min_refresh),
            max_refresh: Some(c.jwks.max_refresh),
            default_refresh: Some(c.jwks.default_refresh),
            unknown_kid_cooldown: Some(c.jwks.unknown_kid_cooldown),
            fetch_timeout: Some(c.jwks.fetch_timeout),
            max_response_bytes: Some(c.jwks.max_response_bytes),
        }),
        token_cache: Some(RawTokenCache {
            enabled: Some(c.token_cache.enabled),
            max_entries: Some(c.token_cache.max_entries),
            max_bytes: Some(c.token_cache.max_bytes),
        }),
        issuers: Some(c.issuers.iter().map(issuer).collect()),
        paths: Some(RawPaths {
            encoded_slashes: Some(if c.paths.keep_encoded_slashes {
                RawEncodedSlashes::Keep
            } else {
                RawEncodedSlashes::Refuse
            }),
            case_insensitive: Some(c.paths.case_insensitive),
        }),
        routes: Some(c.routes.iter().map(|r| route(r, &c.issuers)).collect()),
        identity: Some(RawIdentity {
            headers: Some(HeaderMapping(
                c.identity.headers.iter().map(|h| (h.name.as_str().to_string(), source(&h.value))).collect(),
            )),
            claims_header: c.identity.claims_header.as_ref().map(|h| h.as_str().to_string()),
            forward_authorization: Some(c.identity.forward_authorization),
        }),
        protected_resource: c.protected_resource.as_ref().map(|p| RawProtectedResource {
            resource: Some(p.resource.clone()),
            authorization_servers: Some(p.authorization_servers.clone()),
            scopes_supported: Some(p.scopes_supported.clone()),
            resource_name: p.resource_name.clone(),
        }),
        trusted_proxies: Some(c.trusted_proxies.iter().map(ToString::to_string).collect()),
        decision: c.decision.as_ref().map(|d| RawDecision {
            listen: Some(d.listen.to_string()),
            trusted_peers: Some(d.trusted_peers.iter().map(ToString::to_string).collect()),
        }),
        access_log: Some(RawAccessLog {
            enabled: Some(c.access_log.enabled),
            subjects: Some(c.access_log.subjects),
            query: Some(c.access_log.query),
        }),
    }
}

fn issuer(i: &Issuer) -> RawIssuer {
    // The key and header settings only exist for issuers that validate JWTs locally.
    let local = i.mode != TokenMode::Introspection;
    RawIssuer {
        id: Some(i.id.clone()),
        issuer: Some(i.issuer.clone()),
        provider: Some(i.provider.into()),
        issuer_aliases: Some(i.aliases.clone()),
        tenants: (!i.tenants.is_empty()).then(|| i.tenants.clone()),
        discovery_url: i.discovery_url.clone(),
        jwks_uri: match &i.keys {
            KeySource::JwksUri(u) => Some(u.clone()),
            _ => None,
        },
        hmac_secret: match &i.keys {
            KeySource::Secret(_) => Some(RawSecret(REDACTED.to_string())),
            _ => None,
        },
        audiences: Some(i.audiences.clone()),
        audience_check: Some(match i.audience_check {
            AudienceCheck::Enabled => RawAudienceCheck::Enabled,
            AudienceCheck::Disabled => RawAudienceCheck::Disabled,
        }),
        algorithms: local.then(|| i.algorithms.iter().map(|a| format!("{a:?}")).collect()),
        leeway: Some(i.leeway),
        require_typ_at_jwt: local.then_some(i.require_at_jwt),
        // The effective sources: the defaults spelled out where that reads back the same.
        audience_claim: Some(i.sources.audience.as_ref().map_or_else(|| "aud".to_owned(), ToString::to_string)),
        client_id_claim: Some(match i.sources.client_id.is_empty() {
            true => OneOrMany::Many(vec!["client_id".into(), "azp".into()]),
            false => paths(&i.sources.client_id),
        }),
        scope_claim: (!i.sources.scopes.is_empty()).then(|| paths(&i.sources.scopes)),
        roles_claim: Some(paths(&i.sources.roles)),
        required_claims: Some(i.required_claims.iter().map(claim_rule).collect()),
        mode: Some(match i.mode {
            TokenMode::Jwt => RawMode::Jwt,
            TokenMode::Introspection => RawMode::Introspection,
            TokenMode::Auto => RawMode::Auto,
        }),
        introspection: i.introspection.as_ref().map(introspection),
    }
}

fn introspection(x: &Introspection) -> RawIntrospection {
    // Tokeninfo takes no client credentials.
    let credentials = x.protocol == IntrospectionProtocol::Rfc7662;
    RawIntrospection {
        endpoint: x.endpoint.clone(),
        client_id: credentials.then(|| x.client_id.clone()),
        client_secret: credentials.then(|| RawSecret(REDACTED.to_string())),
        auth_method: credentials.then_some(match x.auth_method {
            ClientAuthMethod::ClientSecretBasic => RawClientAuthMethod::ClientSecretBasic,
            ClientAuthMethod::ClientSecretPost => RawClientAuthMethod::ClientSecretPost,
        }),
        protocol: Some(match x.protocol {
            IntrospectionProtocol::Rfc7662 => RawIntrospectionProtocol::Rfc7662,
            IntrospectionProtocol::GoogleTokeninfo => RawIntrospectionProtocol::GoogleTokeninfo,
        }),
        timeout: Some(x.timeout),
        cache_max_ttl: Some(x.cache_max_ttl),
        negative_ttl: Some(x.negative_ttl),
        cache_capacity: Some(x.cache_capacity),
        cache_max_bytes: Some(x.cache_max_bytes),
        max_concurrent: Some(x.max_concurrent),
        rate_limit: Some(x.rate_limit),
        rate_burst: Some(x.rate_burst),
        breaker_failures: Some(x.breaker_failures),
        breaker_open_for: Some(x.breaker_open_for),
    }
}

fn route(r: &super::Route, issuers: &[Issuer]) -> RawRoute {
    let mut raw = RawRoute {
        id: Some(r.id.clone()),
        host: r.host.as_ref().map(|h| match r.port {
            Some(port) => format!("{h}:{port}"),
            None => h.clone(),
        }),
        case_insensitive: Some(r.case_insensitive),
        path_prefix: Some(r.path_prefix.clone()),
        methods: r.methods.as_ref().map(|ms| ms.iter().map(|m| m.as_str().to_string()).collect()),
        upstream: r.upstream.clone(),
        ..RawRoute::default()
    };
    match &r.auth {
        RouteAuth::Public => raw.auth = Some(RawAuth::None),
        RouteAuth::Required(p) => {
            raw.auth = Some(RawAuth::Required);
            raw.issuers = p.issuers.as_ref().map(|list| list.iter().map(|&i| issuers[i].id.clone()).collect());
            raw.audiences = p.audiences.clone();
            raw.scopes = Some(p.scopes.clone());
            raw.scope_match = Some(match p.scope_match {
                ScopeMatch::All => RawScopeMatch::All,
                ScopeMatch::Any => RawScopeMatch::Any,
            });
            raw.roles = Some(p.roles.clone());
            raw.roles_match = Some(match p.roles_match {
                ScopeMatch::All => RawScopeMatch::All,
                ScopeMatch::Any => RawScopeMatch::Any,
            });
            raw.claims = Some(p.claims.iter().map(claim_rule).collect());
        }
    }
    raw
}

fn claim_rule(c: &super::ClaimRule) -> RawClaimRule {
    let (equals, contains) = match &c.test {
        ClaimTest::Equals(v) => (Some(v.clone()), None),
        ClaimTest::Contains(v) => (None, Some(v.clone())),
    };
    RawClaimRule { claim: Some(c.claim.to_string()), equals, contains }
}

fn paths(list: &[super::ClaimPath]) -> OneOrMany {
    match list {
        [one] => OneOrMany::One(one.to_string()),
        many => OneOrMany::Many(many.iter().map(ToString::to_string).collect()),
    }
}

fn source(v: &IdentityValue) -> String {
    match v {
        IdentityValue::Subject => "subject".into(),
        IdentityValue::Scopes => "scopes".into(),
        IdentityValue::Roles => "roles".into(),
        IdentityValue::ClientId => "client_id".into(),
        IdentityValue::Issuer => "issuer".into(),
        IdentityValue::Claim(name) => format!("claim:{name}"),
        IdentityValue::ClientCertSubject => "client_cert_subject".into(),
        IdentityValue::ClientCertSha256 => "client_cert_sha256".into(),
    }
}

fn upstream(u: &UpstreamSettings) -> RawUpstream {
    let written = u.tls.as_ref().map(|t| t.written.clone()).unwrap_or_default();
    RawUpstream {
        url: Some(u.uri.to_string().trim_end_matches('/').to_owned()),
        ca: written.ca,
        server_name: written.server_name,
        client_cert: written.client_cert,
        client_key: written.client_key,
        connect_timeout: Some(u.connect_timeout),
        response_timeout: Some(u.response_timeout),
        pool_idle_timeout: Some(u.pool_idle_timeout),
        pool_max_idle_per_host: Some(u.pool_max_idle_per_host),
        max_in_flight: Some(u.max_in_flight),
    }
}
