//! [`Secret`]: a join token or another bearer secret, kept out of `Debug`.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string (a join token): zeroized on drop, `[redacted]` in
/// `Debug`, readable only through [`expose`](Self::expose).
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The secret, for sending where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::from("s3cr3t-token".to_owned());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "s3cr3t-token");
    }
}
