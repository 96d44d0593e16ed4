//! Source 1: a SecretId/SecretKey pair in the environment, read through a lookup closure so tests never touch
//! the process environment.

use super::{CLBSYNC_ID, CLBSYNC_KEY, Credentials, Error, SDK_ID, SDK_KEY, SDK_TOKEN, SecretKey, SessionToken};

/// Reads credentials through `lookup` (`|name| std::env::var(name).ok()` in production):
/// `CLOUD_TENCENT_SECRET_ID`/`CLOUD_TENCENT_SECRET_KEY` if either is set, else `TENCENTCLOUD_SECRET_ID`/
/// `TENCENTCLOUD_SECRET_KEY` with the optional `TENCENTCLOUD_SESSION_TOKEN`; `None` when neither pair is set. The
/// token belongs to the SDK pair only, so a temporary token is never paired with a long-term key. Empty values
/// count as unset; a pair is never mixed across the two naming schemes; values with surrounding whitespace are
/// refused, not trimmed.
pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Credentials>, Error> {
    let get = |name: &'static str| lookup(name).filter(|v| !v.is_empty());
    let pair = |id_var: &'static str, key_var: &'static str| match (get(id_var), get(key_var)) {
        (Some(id), Some(key)) => Ok(Some((id, key))),
        (Some(_), None) => Err(Error::Incomplete { set: id_var, missing: key_var }),
        (None, Some(_)) => Err(Error::Incomplete { set: key_var, missing: id_var }),
        (None, None) => Ok(None),
    };
    let (id, key, token, source) = if let Some((id, key)) = pair(CLBSYNC_ID, CLBSYNC_KEY)? {
        check_whitespace(CLBSYNC_ID, &id)?;
        check_whitespace(CLBSYNC_KEY, &key)?;
        (id, key, None, vec![CLBSYNC_ID, CLBSYNC_KEY])
    } else if let Some((id, key)) = pair(SDK_ID, SDK_KEY)? {
        check_whitespace(SDK_ID, &id)?;
        check_whitespace(SDK_KEY, &key)?;
        let token = get(SDK_TOKEN);
        let mut source = vec![SDK_ID, SDK_KEY];
        if let Some(t) = &token {
            check_whitespace(SDK_TOKEN, t)?;
            source.push(SDK_TOKEN);
        }
        (id, key, token, source)
    } else {
        return Ok(None);
    };
    Ok(Some(Credentials {
        secret_id: id,
        secret_key: SecretKey::new(key),
        token: token.map(SessionToken::new),
        source: source.join("/"),
    }))
}

/// A value with surrounding whitespace is refused without being echoed: `var` names it.
pub(super) fn check_whitespace(var: &'static str, value: &str) -> Result<(), Error> {
    if value.trim() != value {
        return Err(Error::Whitespace { var });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn read(pairs: &[(&str, &str)]) -> Result<Credentials, Error> {
        from_lookup(env(pairs)).map(|c| c.expect("a pair is set"))
    }

    #[test]
    fn clbsync_pair_wins_over_sdk_names() {
        let c =
            read(&[(CLBSYNC_ID, "id1"), (CLBSYNC_KEY, "key1"), (SDK_ID, "id2"), (SDK_KEY, "key2"), (SDK_TOKEN, "tok")])
                .unwrap();
        assert_eq!(c.secret_id, "id1");
        assert_eq!(c.secret_key, SecretKey::new("key1"));
        assert!(c.token.is_none());
        assert_eq!(c.source_description(), "CLOUD_TENCENT_SECRET_ID/CLOUD_TENCENT_SECRET_KEY");
    }

    #[test]
    fn sdk_names_are_the_fallback_with_token() {
        let c = read(&[(SDK_ID, "id2"), (SDK_KEY, "key2"), (SDK_TOKEN, "tok")]).unwrap();
        assert_eq!(c.secret_id, "id2");
        assert_eq!(c.token.as_ref().map(SessionToken::expose), Some("tok"));
        assert_eq!(c.source_description(), "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY/TENCENTCLOUD_SESSION_TOKEN");
        let c = read(&[(CLBSYNC_ID, ""), (SDK_ID, "id2"), (SDK_KEY, "key2")]).unwrap();
        assert_eq!(c.source, "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY");
    }

    #[test]
    fn no_pair_is_none_not_an_error() {
        assert!(from_lookup(env(&[(SDK_TOKEN, "tok")])).unwrap().is_none());
    }

    #[test]
    fn half_a_pair_is_an_error_not_a_fallback() {
        let err = read(&[(CLBSYNC_ID, "id1"), (SDK_ID, "id2"), (SDK_KEY, "key2")]);
        assert_eq!(err.unwrap_err(), Error::Incomplete { set: CLBSYNC_ID, missing: CLBSYNC_KEY });
    }

    #[test]
    fn whitespace_in_a_key_is_refused_without_echoing_it() {
        let err = read(&[(SDK_ID, "id2"), (SDK_KEY, "secretvalue\n")]).unwrap_err();
        assert_eq!(err, Error::Whitespace { var: SDK_KEY });
        assert!(!err.to_string().contains("secretvalue"));
        let err = read(&[(CLBSYNC_ID, " id"), (CLBSYNC_KEY, "k")]).unwrap_err();
        assert_eq!(err, Error::Whitespace { var: CLBSYNC_ID });
    }
}
