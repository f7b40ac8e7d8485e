//! Valid but weaker-than-default settings, reported by `check-config` and logged at start so an
//! opt-out never goes unnoticed.

use super::{AudienceCheck, Config, Provider, RouteAuth};

/// One line per weakened setting, in config order.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, issuer) in config.issuers.iter().enumerate() {
        if issuer.audience_check == AudienceCheck::Disabled {
            out.push(format!(
                "issuers[{i}] ({:?}) has audience_check: disabled: on routes that set no audiences, its \
                 tokens are accepted whatever their `aud`, including tokens minted for other APIs and ID tokens",
                issuer.id
            ));
        }
        // Keycloak puts `account` (its account console) in the `aud` of every user's token.
        if issuer.provider == Provider::Keycloak && issuer.audiences.iter().any(|a| a == "account") {
            out.push(format!(
                "issuers[{i}] ({:?}) lists the audience \"account\", which Keycloak puts in every user's token: \
                 any client's token passes; add an Audience mapper for this API's client and list that instead",
                issuer.id
            ));
        }
    }
    for (j, route) in config.routes.iter().enumerate() {
        let RouteAuth::Required(policy) = &route.auth else { continue };
        let introspecting: Vec<&str> = config
            .issuers
            .iter()
            .enumerate()
            .filter(|(i, issuer)| issuer.introspection.is_some() && policy.accepts_issuer(*i))
            .map(|(_, issuer)| issuer.id.as_str())
            .collect();
        if let [first, _, ..] = introspecting[..] {
            out.push(format!(
                "route {:?} (routes[{j}]) accepts several issuers that introspect ({}): an opaque token names \
                 no issuer, so it is introspected only at the first, {first:?}; to accept another's opaque \
                 tokens, give it its own route with `issuers: [<id>]`",
                route.id,
                introspecting.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Config {
        crate::config::load_text(std::path::Path::new("t.yaml"), yaml, &Default::default()).unwrap()
    }

    #[test]
    fn keycloak_account_audience() {
        let yaml = |aud: &str| {
            format!(
                "upstream: {{ url: http://127.0.0.1:8081 }}\nissuers:\n  - issuer: https://sso.example.com/realms/acme\n    provider: keycloak\n    audiences: [{aud}]\n"
            )
        };
        assert!(warnings(&load(&yaml("account"))).iter().any(|w| w.contains("\"account\"")));
        assert!(warnings(&load(&yaml("orders-api"))).is_empty());
    }
}
