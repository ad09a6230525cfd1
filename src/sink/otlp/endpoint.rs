//! Endpoint checks at build time: an endpoint is an `http://` or `https://` URL with a host, and
//! an error says what was given and what is expected. And the credentials an endpoint may
//! carry (`http://user:password@host`), hidden wherever an endpoint is shown: the effective
//! configuration, `Debug`, warnings and errors, with the values of its query parameters
//! (`?api_key=…`). Requests still go to the URL as given.

/// Whether an endpoint is reached over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `http://`: plain text.
    Http,
    /// `https://`: TLS.
    Https,
}

/// What stands for a password (or a user name given alone, often a token) in a URL shown.
const HIDDEN: &str = "***";

/// `url` as it may be shown: its user information hidden, `user:***@host` (`***@host` for a
/// user name alone, which is often a token), and the value of every query parameter
/// (`?api_key=***`: some services take their key there). A URL without a scheme is read from
/// its start.
pub(super) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    format!("{scheme}{}", redact_after_scheme(rest, false))
}

/// What follows a URL's `scheme://`, with its user information and query values hidden.
/// `in_text`: the URL is quoted in a message, and the punctuation after it is kept as it is.
fn redact_after_scheme(rest: &str, in_text: bool) -> String {
    // In a message, the punctuation that follows a URL (`(http://…):`, `"http://…",`) is not
    // part of it.
    let (rest, after) = if in_text {
        rest.split_at(rest.len() - trailing_punctuation(rest))
    } else {
        (rest, "")
    };
    // The user information ends at the last `@` (a password may hold an unescaped `@`, `/`,
    // `?` or `#`, which a well-formed URL would have percent-encoded): this hides too much
    // rather than too little when a path or a query holds an `@`.
    let Some(at) = rest.rfind('@') else {
        return format!("{}{after}", hide_query_values(rest));
    };
    let user_info = hide_user_info(&rest[..at]);
    let host_on = &rest[at + 1..];
    let host_on = if rest[..at].contains('?') {
        // The `@` may be a query value's (`?key=abc@def`): what follows it, up to the next
        // parameter, is hidden as a value too.
        let end = host_on.find(['&', '#']).unwrap_or(host_on.len());
        format!("{HIDDEN}{}", hide_params(&host_on[end..]))
    } else {
        hide_query_values(host_on)
    };
    format!("{user_info}@{host_on}{after}")
}

/// How many bytes at the end of a URL quoted in a message are the message's punctuation: a
/// closing bracket or quote, then a `:`, `,`, `.` or `;` (`(http://…):`). At most these two,
/// so that the end of a query value is not shown.
fn trailing_punctuation(url: &str) -> usize {
    let b = url.as_bytes();
    let mut n = 0;
    if b.len() > n && matches!(b[b.len() - 1 - n], b':' | b',' | b'.' | b';') {
        n += 1;
    }
    if b.len() > n && matches!(b[b.len() - 1 - n], b')' | b']' | b'"' | b'\'' | b'`' | b'>') {
        n += 1;
    }
    n
}

/// `url` with the value of each query parameter shown as `***` (a parameter without a value,
/// which may be a token, as `***` whole), and its fragment (never sent; it may be the end of a
/// value holding a `#`) as `#***`.
fn hide_query_values(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(q) if url[q..].starts_with('?') => {
            format!("{}?{}", &url[..q], hide_params(&url[q + 1..]))
        }
        Some(q) => format!("{}{}", &url[..q], hide_params(&url[q..])),
        None => url.to_owned(),
    }
}

/// Query parameters (`a=1&b=2#fragment`) with their values and the fragment hidden.
fn hide_params(query: &str) -> String {
    let end = query.find('#').unwrap_or(query.len());
    let fragment = if query.len() > end + 1 {
        format!("#{HIDDEN}")
    } else {
        query[end..].to_owned()
    };
    let hidden: Vec<String> = query[..end]
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, "")) => format!("{name}="),
            Some((name, _)) => format!("{name}={HIDDEN}"),
            None if param.is_empty() => String::new(),
            None => HIDDEN.to_owned(),
        })
        .collect();
    format!("{}{fragment}", hidden.join("&"))
}

/// `text` (an error message, a chain of them) with the user information and query values of
/// every URL in it hidden as [`redact`] does: the HTTP client quotes the URL it failed to
/// reach.
pub(super) fn redact_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // A URL in text runs on to the next space: a password or a query value the HTTP
        // client quotes may hold a quote, a `'`, a backtick or an angle bracket (the `url`
        // crate leaves some as they are). What follows the URL up to the space hides too much
        // rather than too little; the punctuation at its end is kept.
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        out.push_str(&redact_after_scheme(&after[..end], true));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `user:password` as `user:***`, `token` as `***`.
fn hide_user_info(user_info: &str) -> String {
    match user_info.split_once(':') {
        // A "user name" holding what a user name cannot (`@`, `/`, `?`, `#`) is not one: the
        // `:` is a port's or a query value's, and what precedes it may be a token.
        Some((user, _)) if !user.contains(['@', '/', '?', '#']) => format!("{user}:{HIDDEN}"),
        None if user_info.is_empty() => String::new(),
        _ => HIDDEN.to_owned(),
    }
}

/// Checks `url`, the endpoint named by `what` (e.g. "the traces endpoint"), and returns its
/// scheme. The error quotes the URL with its credentials hidden.
pub(super) fn validate(url: &str, what: &str) -> Result<Scheme, String> {
    let expected = "expected a URL such as http://collector:4317 or https://collector:4317";
    // Checked as given; quoted with its credentials hidden.
    let (given, shown) = (url, redact(url));
    let url = shown.as_str();
    let Some((scheme, rest)) = given.split_once("://") else {
        return Err(format!(
            "{what} {url:?} has no scheme: {expected} (http:// for plain text, https:// for TLS)"
        ));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(format!(
                "{what} {url:?} uses the scheme {other:?}, which OTLP does not: {expected}"
            ))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{what} {url:?} has no host: {expected}"));
    }
    // The HTTP client reads the port only when it sends, and then every export would fail.
    // Not quoted: it may be part of a password cut short by a `/`, `?` or `#`.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(']') {
        Some((ipv6, after)) => (&host_port[..=ipv6.len()], after.strip_prefix(':')),
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    // What the HTTP client refuses at each export: no host, or brackets that do not hold an
    // IPv6 address.
    let bad_ipv6 = host.starts_with('[')
        && host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
            .is_none();
    if host.is_empty() || bad_ipv6 || host_port[host.len()..].starts_with(|c| c != ':') {
        return Err(format!(
            "{what} {url:?} has no valid host (a name, an IPv4 address or an IPv6 address in \
             brackets): {expected}"
        ));
    }
    // An empty port (`host:`) is the scheme's.
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if !port.bytes().all(|b| b.is_ascii_digit()) || !matches!(port.parse(), Ok(1..=65535u32)) {
            let hint = if rest[authority.len()..].contains('@') {
                " (a `/`, `?` or `#` in a user name or password must be percent-encoded)"
            } else {
                ""
            };
            return Err(format!(
                "{what} {url:?} has an invalid port: expected a number from 1 to 65535{hint}: \
                 {expected}"
            ));
        }
    }
    given
        .parse::<http::Uri>()
        .map_err(|e| format!("{what} {url:?} is not a valid URL ({e}): {expected}"))?;
    Ok(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_pass() {
        assert_eq!(validate("http://127.0.0.1:4317", "e"), Ok(Scheme::Http));
        assert_eq!(
            validate("HTTPS://collector.example:443/v1/traces", "e"),
            Ok(Scheme::Https)
        );
    }

    #[test]
    fn credentials_are_hidden_in_urls_and_in_text() {
        assert_eq!(
            redact("http://user:s3cr3t@collector:4318/v1/traces"),
            "http://user:***@collector:4318/v1/traces"
        );
        assert_eq!(redact("https://tok3n@collector"), "https://***@collector");
        assert_eq!(
            redact("user:s3cr3t@collector:4317"),
            "user:***@collector:4317"
        );
        assert_eq!(redact("http://us:pa@ss/w@rd@host"), "http://us:***@host");
        assert_eq!(redact("http://collector:4317"), "http://collector:4317");
        assert_eq!(
            redact_in("url (http://o'brien:pa's3cr3t@127.0.0.1:9/v1/traces): refused"),
            "url (http://o'brien:***@127.0.0.1:9/v1/traces): refused"
        );
        let text = "export failed (error sending request for url \
                    (http://user:s3cr3t@127.0.0.1:9/v1/traces): connect); then \
                    \"https://k3y@other:443\" and http://plain:80/x";
        assert_eq!(
            redact_in(text),
            "export failed (error sending request for url \
             (http://user:***@127.0.0.1:9/v1/traces): connect); then \
             \"https://***@other:443\" and http://plain:80/x"
        );
    }

    #[test]
    fn query_values_are_hidden_in_urls_and_in_text() {
        assert_eq!(
            redact("http://collector:4318/otlp/v1/traces?api_key=s3cr3t&region=eu"),
            "http://collector:4318/otlp/v1/traces?api_key=***&region=***"
        );
        assert_eq!(redact("http://h/?s3cr3t#frag"), "http://h/?***#***");
        assert_eq!(redact("http://h/?a=&&b"), "http://h/?a=&&***");
        assert_eq!(
            redact("http://u:p4ss@h/x?k=s3cr3t"),
            "http://u:***@h/x?k=***"
        );
        assert_eq!(
            redact_in("error sending request for url (http://h:9/v1/logs?key=s3cr3t): refused"),
            "error sending request for url (http://h:9/v1/logs?key=***): refused"
        );
        // An `@` or a `)` in a query value is the value's: the host stays shown, and nothing
        // of the value (found by an adversary: `http://h:***@s3cr3t`, `?key=***)3t`).
        // (An `@` after a `?` may also end a password holding a `?`: the port and path are
        // hidden with it.)
        assert_eq!(
            redact("http://127.0.0.1:14399/otlp?api_key=abc@s3cr3t"),
            "http://127.0.0.1:***@***"
        );
        assert_eq!(
            redact("http://h:1/x?a=1&key=abc@s3cr3t&b=2#f"),
            "http://h:***@***&b=***#***"
        );
        assert_eq!(redact("http://u:p@ss@h/x?k=a@b"), "http://u:***@***");
        // A `#` or `?` in a password (not percent-encoded) hides it too (found by an
        // adversary: the password was shown once `@` was looked for before them only).
        assert_eq!(redact("http://user:pa#ss@h:4318"), "http://user:***@h:4318");
        assert_eq!(redact("http://user:pa?ss@h:4318"), "http://user:***@***");
        assert_eq!(
            redact("http://user:pa/v1/traces#ss@h:4318"),
            "http://user:***@h:4318"
        );
        // A token before the host, with an `@` later (in the path or a query value): its `:`
        // is the port's, not a password's (found by an adversary: the token was shown).
        for url in [
            "http://tok3n@127.0.0.1:9/otlp?key=x@y",
            "http://tok3n@127.0.0.1:9/a@b/otlp",
            "http://tok3n@[::1]:9/otlp?key=x@y",
            "http://127.0.0.1/otlp?key=abctok3n:def@ghi",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("tok3n"), "{url} shown as {shown}");
            let shown = redact_in(&format!("failed (error for url ({url})): refused"));
            assert!(!shown.contains("tok3n"), "{url} shown as {shown}");
        }
        // The end of a query value is not taken for a message's punctuation.
        assert_eq!(
            redact_in("url (http://h:9/x?key=abc:).,;): refused"),
            "url (http://h:9/x?key=***): refused"
        );
        // Anything a query value may hold in a message: the URL runs on to the next space.
        assert_eq!(
            redact_in("failed (http://h:9/otlp?api_key=abc`s3cr3t\"<x>'y): refused"),
            "failed (http://h:9/otlp?api_key=***): refused"
        );
        assert_eq!(
            redact_in("url (http://h:9/v1/logs?key=ab)3t@s3cr3t): refused"),
            "url (http://h:***@***): refused"
        );
    }

    /// Secrets in every place a URL holds them (a password, a token given as the user name, a
    /// query value), wrapped in the characters that confuse a reader of URLs, never show in
    /// what `redact` or `redact_in` return.
    #[test]
    fn no_secret_shows_whatever_surrounds_it() {
        const SECRET: &str = "Zq9Zq9";
        const HOSTILE: &[u8] = b"@:/?#&=)(`'\"<>.,;![]%+ ";
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let noise = |next: &mut dyn FnMut(usize) -> usize| -> String {
            (0..next(4))
                .map(|_| match next(3) {
                    0 => char::from(HOSTILE[next(HOSTILE.len())]),
                    _ => char::from(b'a' + next(26) as u8),
                })
                .collect()
        };
        for case in 0..20_000 {
            let wrapped = format!("{}{SECRET}{}", noise(&mut next), noise(&mut next));
            let user_info = match next(4) {
                0 => format!("user:{wrapped}@"),
                // A token: a user name alone (with a `:`, it is a user name and a password).
                1 => format!("{}@", wrapped.replace(':', "x")),
                2 => format!("u{}:p@", noise(&mut next)),
                _ => String::new(),
            };
            let host = ["h", "127.0.0.1", "[::1]"][next(3)];
            let port = [":4318", "", ":"][next(3)];
            let path = format!("/{}", noise(&mut next));
            let query = match (user_info.contains(SECRET), next(3)) {
                // (A raw `&` would end the value: what follows is another parameter.)
                (false, _) => format!(
                    "?a=1&key={}&b={}",
                    wrapped.replace('&', "x"),
                    noise(&mut next)
                ),
                (true, 0) => String::new(),
                (true, _) => format!("?k={}", noise(&mut next)),
            };
            let url = format!("http://{user_info}{host}{port}{path}{query}");
            let shown = redact(&url);
            assert!(
                !shown.contains(SECRET),
                "case {case}: {url:?} shown as {shown:?}"
            );
            // A URL the HTTP client quotes holds no space (it is refused, or percent-encoded).
            if url.contains(' ') {
                continue;
            }
            let text = format!("error sending request for url ({url}): refused");
            let shown = redact_in(&text);
            assert!(
                !shown.contains(SECRET),
                "case {case}: {text:?} shown as {shown:?}"
            );
        }
    }

    #[test]
    fn an_invalid_endpoint_is_quoted_without_its_credentials() {
        for url in [
            "user:s3cr3t@collector:4317",
            "ftp://user:s3cr3t@collector",
            "http://user:s3cr3t@",
            "http://user:s3cr3t@exa mple:4317",
        ] {
            let e = validate(url, "the endpoint").unwrap_err();
            assert!(!e.contains("s3cr3t") && e.contains("user:***@"), "{e}");
        }
        assert!(validate("http://user:s3cr3t@collector:4317", "e").is_ok());
    }

    #[test]
    fn errors_quote_what_was_given_and_say_what_is_expected() {
        let no_scheme = validate("collector:4317", "the endpoint").unwrap_err();
        assert!(
            no_scheme.starts_with("the endpoint \"collector:4317\" has no scheme"),
            "{no_scheme}"
        );
        assert!(no_scheme.contains("expected a URL such as http://collector:4317"));
        assert!(
            !no_scheme.contains("https://collector:4317\""),
            "no URL the user never wrote is quoted as theirs: {no_scheme}"
        );

        let ftp = validate("ftp://x", "the endpoint").unwrap_err();
        assert!(ftp.contains("\"ftp://x\" uses the scheme \"ftp\""), "{ftp}");

        let no_host = validate("http:///v1/traces", "the endpoint").unwrap_err();
        assert!(no_host.contains("has no host"), "{no_host}");

        let bad = validate("http://exa mple:4317", "the endpoint").unwrap_err();
        assert!(bad.contains("is not a valid URL"), "{bad}");

        // A port the HTTP client would refuse at every export (found by an adversary).
        for url in [
            "http://collector:abc",
            "http://collector:99999",
            "http://c:0/x",
            "http://[::1]:x",
        ] {
            let e = validate(url, "the endpoint").unwrap_err();
            assert!(e.contains("has an invalid port"), "{url}: {e}");
        }
        for url in [
            "http://collector:4318",
            "http://[::1]:4317/v1",
            "http://[::1]",
            "http://c:/x",
        ] {
            assert!(validate(url, "e").is_ok(), "{url}");
        }
        // No host, or brackets without an IPv6 address (found by an adversary).
        for url in [
            "http://:9",
            "http://u:p@:9",
            "http://:",
            "http://[::1]x",
            "http://[127.0.0.1]:9",
            "http://[fe80::1%eth0]:9",
        ] {
            let e = validate(url, "the endpoint").unwrap_err();
            assert!(e.contains("has no valid host"), "{url}: {e}");
        }
        // A `#` in a password: the URL's authority ends there, so "pa" reads as the port.
        let e = validate("http://user:pa#ss@collector:4318", "the endpoint").unwrap_err();
        assert!(e.contains("percent-encoded") && !e.contains("pa#ss"), "{e}");
    }
}
