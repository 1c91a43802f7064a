//! Passwords and tokens: argon2id password hashes (computed on a blocking thread: hashing costs tens of
//! milliseconds of CPU), random bearer tokens stored only as their SHA-256.

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use sha2::{Digest, Sha256};

/// argon2 working memory, reused: each hash needs `m_cost` KiB (19 MiB with the default parameters).
/// Allocating and freeing that per hash left it resident in glibc's per-thread arenas (one 19 MiB block per
/// blocking thread that ever hashed, ~130 MB after a few dozen logins). Instead the buffers are kept here
/// and reused: at most one per core (the service hashes at most one per core at a time), so the memory
/// argon2 holds is bounded by cores x 19 MiB whatever the number of logins.
mod memory {
    use argon2::Block;
    use parking_lot::Mutex;

    static POOL: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

    fn capacity() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Runs `f` with at least `blocks` blocks of working memory.
    pub(super) fn with_blocks<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        if blocks > argon2::Params::default().block_count() {
            // Parameters above ours (a hash made elsewhere): one-off memory, never pooled.
            return f(&mut vec![Block::default(); blocks]);
        }
        let mut buf = POOL.lock().pop().unwrap_or_default();
        if buf.len() < blocks {
            // Grows once per pooled buffer for the default parameters; the contents need no clearing
            // (argon2 initialises every block before reading it).
            buf.resize(blocks, Block::default());
        }
        let out = f(&mut buf[..blocks]);
        let mut pool = POOL.lock();
        if pool.len() < capacity() {
            pool.push(buf);
        }
        out
    }

    /// Buffers currently pooled (tests).
    #[cfg(test)]
    pub(super) fn pooled() -> usize {
        POOL.lock().len()
    }
}

/// Hashes with explicit parameters into pooled working memory and builds the PHC string.
fn hash_with<'a>(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: Salt<'a>,
) -> password_hash::Result<PasswordHash<'a>> {
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(len, |out| {
        memory::with_blocks(params.block_count(), |blocks: &mut [Block]| {
            argon.hash_password_into_with_memory(password, salt_bytes, out, blocks)
        })
        .map_err(password_hash::Error::from)
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// Hashes `password` with argon2id (default parameters) and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("could not make a salt: {e}"))?;
    hash_with(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::default(),
        password.as_bytes(),
        salt.as_salt(),
    )
    .map(|h| h.to_string())
    .map_err(|e| format!("could not hash the password: {e}"))
}

/// Checks `password` against a stored PHC hash (false for a malformed hash), in pooled working memory.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let check = || -> password_hash::Result<bool> {
        let stored = PasswordHash::new(phc)?;
        let algorithm = Algorithm::try_from(stored.algorithm)?;
        let version = stored
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let params = Params::try_from(&stored)?;
        let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
            return Ok(false);
        };
        let computed = hash_with(algorithm, version, params, password.as_bytes(), salt)?;
        // `Output` compares in constant time.
        Ok(computed.hash == Some(expected))
    };
    check().unwrap_or(false)
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
    fn hashes_are_standard_phc_strings_and_reuse_their_memory() {
        use argon2::password_hash::PasswordVerifier;
        let h = hash_password("correct horse").unwrap();
        // The stock verifier accepts our hashes, and ours accepts the stock ones.
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let stock = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::default(),
            b"pw12345678",
            &salt,
        )
        .unwrap()
        .to_string();
        assert!(verify_password("pw12345678", &stock));
        assert!(!verify_password("pw12345679", &stock));
        assert!(
            memory::pooled() >= 1,
            "the working memory went back to the pool"
        );
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
