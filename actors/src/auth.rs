//! Passwords and tokens: argon2id password hashes (computed on a blocking thread: hashing costs tens of
//! milliseconds of CPU), random bearer tokens stored only as their SHA-256.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// Hashes `password` with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("could not make a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("could not hash the password: {e}"))
}

/// Checks `password` against a stored PHC hash (false for a malformed hash).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new random bearer token (256 bits, hex).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Minimum password length accepted by `user add`.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (bytes), at login as for a new password.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest user name (bytes); a longer name is refused before it is stored or counted anywhere.
pub const MAX_USER_NAME_LEN: usize = 64;

/// Checks a new password against the policy.
pub fn check_password_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password is too short: at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    check_password_len(password)
}

/// Checks only the length bound of a password (what `login` checks before any work).
pub fn check_password_len(password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password: {} bytes is longer than the limit of {MAX_PASSWORD_LEN} bytes",
            password.len()
        ));
    }
    Ok(())
}

/// Checks only the length bound of a user name (what `login` checks before any work).
pub fn check_user_name_len(name: &str) -> Result<(), String> {
    if name.len() > MAX_USER_NAME_LEN {
        return Err(format!(
            "user: a name of {} bytes is longer than the limit of {MAX_USER_NAME_LEN} bytes",
            name.len()
        ));
    }
    Ok(())
}

/// Checks a user name: 1..=64 characters of `[A-Za-z0-9_.-]`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    check_user_name_len(name)?;
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user name {name:?}: use 1 to {MAX_USER_NAME_LEN} characters from A-Z a-z 0-9 _ . -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_reject() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_user_name("alice_1").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a b").is_err());
        assert!(check_password_policy("short").is_err());
        assert!(check_password_policy("long enough").is_ok());
        // Over-long names and passwords: refused with the limit, without echoing the input.
        let long = "a".repeat(4 << 20);
        let e = check_user_name(&long).unwrap_err();
        assert!(e.contains("limit of 64 bytes") && e.len() < 200, "{e}");
        assert!(check_user_name(&"a".repeat(64)).is_ok());
        let e = check_password_policy(&long).unwrap_err();
        assert!(e.contains("limit of 1024 bytes") && e.len() < 200, "{e}");
    }
}
