//! Identifiers and secrets: what a valid id or token looks like, and how the state
//! machine derives a fresh token without a random source.
//!
//! Ids arrive from users (custom session ids, media-node ids, request ids) or from the
//! leader (`con_…` connection ids, `tok_…` tokens). Both are checked here, because a
//! buggy or hostile proposer must not be able to put a malformed id into the log.

use sha2::{Digest, Sha256};

use super::Error;

/// Longest session or media-node id, as OpenVidu's `customSessionId`.
pub const MAX_ID_LEN: usize = 100;

/// Longest request id, in bytes. Long enough for a UUID plus a client prefix, short
/// enough that 100 000 remembered ids stay small.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Prefix of every connection id.
pub const CONNECTION_ID_PREFIX: &str = "con_";

/// Longest connection id, prefix included.
pub const MAX_CONNECTION_ID_LEN: usize = 100;

/// Prefix of every connection token.
pub const TOKEN_PREFIX: &str = "tok_";

/// Fewest random alphanumerics after `tok_`: 16 of 62 symbols is ~95 bits, beyond guessing.
pub const MIN_TOKEN_SECRET_LEN: usize = 16;

/// Most alphanumerics after `tok_`; a bound so an absurd token cannot bloat the state.
pub const MAX_TOKEN_SECRET_LEN: usize = 128;

/// Alphanumerics in a token derived by `derive_token`: 24 symbols is ~143 bits.
pub const DERIVED_TOKEN_SECRET_LEN: usize = 24;

/// How many leading characters of a token an error message may show.
const TOKEN_HINT_LEN: usize = 8;

/// The 62 symbols tokens are drawn from.
const ALPHANUMERICS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Checks a session id against `^[A-Za-z0-9_-]{1,100}$` (field `session_id`).
///
/// Generated ids (`ses_` plus alphanumerics) pass the same check, so the state machine
/// does not care which kind it got.
pub fn validate_session_id(id: &str) -> Result<(), Error> {
    validate_name("session_id", id)
}

/// Checks a media-node id against `^[A-Za-z0-9_-]{1,100}$` (field `media_node_id`).
pub fn validate_media_node_id(id: &str) -> Result<(), Error> {
    validate_name("media_node_id", id)
}

/// Checks a connection id: `con_` followed by at least one ASCII alphanumeric, at most
/// `MAX_CONNECTION_ID_LEN` bytes in all (field `connection_id`).
pub fn validate_connection_id(id: &str) -> Result<(), Error> {
    let field = "connection_id";
    let Some(rest) = id.strip_prefix(CONNECTION_ID_PREFIX) else {
        return Err(Error::invalid_argument(field, "must start with 'con_'"));
    };
    if rest.is_empty() || id.len() > MAX_CONNECTION_ID_LEN {
        return Err(Error::invalid_argument(
            field,
            format!(
                "must be 'con_' plus 1 to {} letters or digits",
                MAX_CONNECTION_ID_LEN - 4
            ),
        ));
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid_argument(
            field,
            "may contain only letters and digits after 'con_'",
        ));
    }
    Ok(())
}

/// Checks a token: `tok_` followed by 16 to 128 ASCII alphanumerics (field `token`).
///
/// The message never repeats the token: it is a secret, and errors end up in logs.
pub fn validate_token(token: &str) -> Result<(), Error> {
    let field = "token";
    let Some(secret) = token.strip_prefix(TOKEN_PREFIX) else {
        return Err(Error::invalid_argument(field, "must start with 'tok_'"));
    };
    if !(MIN_TOKEN_SECRET_LEN..=MAX_TOKEN_SECRET_LEN).contains(&secret.len()) {
        return Err(Error::invalid_argument(
            field,
            format!(
                "must be 'tok_' plus {MIN_TOKEN_SECRET_LEN} to {MAX_TOKEN_SECRET_LEN} letters or digits, got {} bytes after the prefix",
                secret.len()
            ),
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid_argument(
            field,
            "may contain only letters and digits after 'tok_'",
        ));
    }
    Ok(())
}

/// Checks a request id: 1 to 128 bytes without control characters (field `request_id`).
///
/// An empty id is refused rather than treated as absent, so that a client bug cannot
/// make every request share the key "".
pub fn validate_request_id(id: &str) -> Result<(), Error> {
    let field = "request_id";
    if id.is_empty() {
        return Err(Error::invalid_argument(
            field,
            "must not be empty (omit it instead)",
        ));
    }
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(Error::invalid_argument(
            field,
            format!(
                "must be at most {MAX_REQUEST_ID_LEN} bytes, got {}",
                id.len()
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid_argument(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A token shortened to its first characters and an ellipsis, safe for messages.
pub fn token_hint(token: &str) -> String {
    let hint: String = token.chars().take(TOKEN_HINT_LEN).collect();
    format!("{hint}…")
}

/// Derives a fresh token for a connection whose old token must stop working.
///
/// The leader draws `seed` from a CSPRNG and puts it in the command, so the result is
/// unguessable yet every master computes the same token. `attempt` lets the caller
/// step past the (astronomically unlikely) collision with a token already in use.
///
/// The hash input separates its parts with NUL bytes, which no valid id contains, so
/// distinct (session, connection) pairs never feed the same bytes. Symbols are drawn
/// from the hash stream by rejection sampling (bytes ≥ 248 are skipped), which keeps
/// every alphanumeric equally likely.
pub fn derive_token(
    seed: &[u8; 32],
    session_id: &str,
    connection_id: &str,
    attempt: u32,
) -> String {
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + DERIVED_TOKEN_SECRET_LEN);
    token.push_str(TOKEN_PREFIX);
    let wanted = TOKEN_PREFIX.len() + DERIVED_TOKEN_SECRET_LEN;
    let mut block: u32 = 0;
    while token.len() < wanted {
        let digest = Sha256::new()
            .chain_update(b"chorus/token/v1\0")
            .chain_update(seed)
            .chain_update(session_id.as_bytes())
            .chain_update([0])
            .chain_update(connection_id.as_bytes())
            .chain_update([0])
            .chain_update(attempt.to_be_bytes())
            .chain_update(block.to_be_bytes())
            .finalize();
        for byte in digest {
            // 248 = 4 * 62: accepting only bytes below it makes `byte % 62` uniform.
            if byte < 248 && token.len() < wanted {
                token.push(char::from(ALPHANUMERICS[usize::from(byte % 62)]));
            }
        }
        block = block.wrapping_add(1);
    }
    token
}

/// Checks `^[A-Za-z0-9_-]{1,MAX_ID_LEN}$` and names `field` when it fails.
fn validate_name(field: &str, id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::invalid_argument(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid_argument(
            field,
            format!("must be at most {MAX_ID_LEN} characters, got {}", id.len()),
        ));
    }
    if let Some((position, bad)) = id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(Error::invalid_argument(
            field,
            format!(
                "may contain only letters, digits, '_' and '-'; found {bad:?} at byte {position}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<(), Error>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn session_ids_follow_the_custom_id_pattern() {
        for good in [
            "a",
            "Z9",
            "ses_AbC123",
            "with-dash_and_underscore",
            &"x".repeat(MAX_ID_LEN),
        ] {
            assert_eq!(
                validate_session_id(good),
                Ok(()),
                "{good:?} should be valid"
            );
        }
        for bad in [
            "",
            &"x".repeat(MAX_ID_LEN + 1),
            "has space",
            "dot.ted",
            "slash/",
            "é",
            "tab\t",
        ] {
            assert_eq!(
                field_of(validate_session_id(bad)),
                "session_id",
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn the_message_says_what_is_wrong() {
        let message = validate_session_id("a.b").unwrap_err().to_string();
        assert!(
            message.contains("'.'") && message.contains("byte 1"),
            "{message}"
        );
        let message = validate_session_id(&"y".repeat(101))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("at most 100") && message.contains("101"),
            "{message}"
        );
    }

    #[test]
    fn media_node_ids_name_their_own_field() {
        assert_eq!(validate_media_node_id("node-1"), Ok(()));
        assert_eq!(field_of(validate_media_node_id("")), "media_node_id");
    }

    #[test]
    fn connection_ids_need_the_prefix_and_alphanumerics() {
        assert_eq!(validate_connection_id("con_a1B2"), Ok(()));
        assert_eq!(
            validate_connection_id(&format!("con_{}", "9".repeat(96))),
            Ok(())
        );
        for bad in [
            "",
            "con_",
            "con_a-b",
            "con_a_b",
            "abc",
            "CON_abc",
            &format!("con_{}", "9".repeat(97)),
        ] {
            assert_eq!(
                field_of(validate_connection_id(bad)),
                "connection_id",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_need_the_prefix_and_enough_alphanumerics() {
        assert_eq!(validate_token("tok_0123456789abcdef"), Ok(()));
        assert_eq!(
            validate_token(&format!("tok_{}", "a".repeat(MAX_TOKEN_SECRET_LEN))),
            Ok(())
        );
        for bad in [
            "",
            "tok_0123456789abcde",
            "tok_0123456789abcde!",
            "0123456789abcdef0123",
            &format!("tok_{}", "a".repeat(MAX_TOKEN_SECRET_LEN + 1)),
        ] {
            assert_eq!(field_of(validate_token(bad)), "token", "{bad:?}");
        }
    }

    #[test]
    fn token_errors_never_echo_the_token() {
        let token = "tok_SECRETSECRETSECRE!";
        let message = validate_token(token).unwrap_err().to_string();
        assert!(!message.contains("SECRET"), "{message}");
        assert_eq!(token_hint("tok_abcdefghijkl"), "tok_abcd…");
        assert_eq!(token_hint("ab"), "ab…");
    }

    #[test]
    fn request_ids_are_bounded() {
        assert_eq!(validate_request_id("r"), Ok(()));
        assert_eq!(validate_request_id(&"r".repeat(MAX_REQUEST_ID_LEN)), Ok(()));
        for bad in ["", &"r".repeat(MAX_REQUEST_ID_LEN + 1), "line\nbreak"] {
            assert_eq!(field_of(validate_request_id(bad)), "request_id", "{bad:?}");
        }
    }

    #[test]
    fn derived_tokens_are_valid_deterministic_and_distinct() {
        let seed = [7u8; 32];
        let token = derive_token(&seed, "s1", "con_a", 0);
        assert_eq!(validate_token(&token), Ok(()));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + DERIVED_TOKEN_SECRET_LEN);
        assert_eq!(
            token,
            derive_token(&seed, "s1", "con_a", 0),
            "same inputs, same token"
        );
        let others = [
            derive_token(&[8u8; 32], "s1", "con_a", 0),
            derive_token(&seed, "s2", "con_a", 0),
            derive_token(&seed, "s1", "con_b", 0),
            derive_token(&seed, "s1", "con_a", 1),
            // Without separators these two would hash the same bytes.
            derive_token(&seed, "s1c", "on_a", 0),
        ];
        for other in others {
            assert_ne!(token, other);
        }
    }
}
