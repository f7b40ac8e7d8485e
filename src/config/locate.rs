//! Where each key of the config file is, so that a value the validator refuses is reported with
//! its file, line and column, like a syntax error. serde gives no positions once a value is
//! parsed, so the (already substituted) text is walked once more with a YAML event parser.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// Key path (`routes[1].scopes`, the spelling of `ConfigError` fields) → 1-based line and column
/// of the key, or of the item for a sequence element.
#[derive(Debug, Default)]
pub struct Locations(HashMap<String, (usize, usize)>);

/// One open container while walking.
enum Open {
    /// A mapping: its path, and the key whose value comes next (`None`: a key comes next).
    Mapping { path: String, key: Option<String> },
    /// A sequence: its path and the index of the next item.
    Sequence { path: String, next: usize },
}

impl Locations {
    /// Positions of every key in `text`; empty when the text is not YAML (the parser reports that).
    pub fn of(text: &str) -> Locations {
        let mut found = HashMap::new();
        let mut stack: Vec<Open> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let at = (span.start.line(), span.start.col() + 1);
            // The path of the value this event starts, when it is a value (not a key).
            let value_path = match stack.last_mut() {
                None => Some(String::new()),
                Some(Open::Sequence { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    found.entry(p.clone()).or_insert(at);
                    Some(p)
                }
                Some(Open::Mapping { path, key }) => match key.take() {
                    Some(k) => Some(if path.is_empty() { k } else { format!("{path}.{k}") }),
                    None => {
                        // A key: remember it and where it is.
                        if let Event::Scalar(name, ..) = &event {
                            let p = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
                            found.entry(p).or_insert(at);
                            *key = Some(name.to_string());
                        }
                        None
                    }
                },
            };
            match event {
                Event::MappingStart(..) => {
                    stack.push(Open::Mapping { path: value_path.unwrap_or_default(), key: None })
                }
                Event::SequenceStart(..) => {
                    stack.push(Open::Sequence { path: value_path.unwrap_or_default(), next: 0 })
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Locations(found)
    }

    /// Where `field` is, or the nearest enclosing key that is in the file (a default that was
    /// not written is reported at the section that holds it).
    pub fn find(&self, field: &str) -> Option<(usize, usize)> {
        let mut path = field;
        loop {
            if let Some(at) = self.0.get(path) {
                return Some(*at);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_items_and_flow_style() {
        let text = "\
listen: 0.0.0.0:8080
upstream:
  url: http://x
issuers:
  - id: a
    audiences: [x, y]
  - { id: b, issuer: 'https://b' }
routes:
  - id: r
    scopes:
      - read
";
        let l = Locations::of(text);
        assert_eq!(l.find("listen"), Some((1, 1)));
        assert_eq!(l.find("upstream.url"), Some((3, 3)));
        assert_eq!(l.find("issuers[0]"), Some((5, 5)));
        assert_eq!(l.find("issuers[0].audiences"), Some((6, 5)));
        assert_eq!(l.find("issuers[1].issuer"), Some((7, 14)));
        assert_eq!(l.find("routes[0].scopes[0]"), Some((11, 9)));
        // Not written: the nearest enclosing key.
        assert_eq!(l.find("upstream.connect_timeout"), Some((2, 1)));
        assert_eq!(l.find("issuers[1].introspection.client_id"), Some((7, 5)));
        assert_eq!(l.find("server.max_connections"), None);
    }

    #[test]
    fn not_yaml_locates_nothing() {
        assert_eq!(Locations::of("a: [").find("a"), Some((1, 1)));
        assert_eq!(Locations::of("").find("a"), None);
    }
}
