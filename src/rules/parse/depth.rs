//! A check before parsing: how deeply `{` and `[` nest.

/// Flow collections (`{`, `[`) nested deeper than this are refused before parsing: the YAML parser's cost grows
/// with the nesting depth of every token, and no rules file needs more than a few levels.
pub(super) const MAX_FLOW_DEPTH: usize = 128;

/// The (line, column) of the first `{` or `[` nested deeper than [`MAX_FLOW_DEPTH`], outside quoted scalars
/// and comments. A quote opens a scalar only where a token can start (after indentation, `[`, `{`, `,`, `:`,
/// `-`, `?`), as in YAML, so an apostrophe inside a plain scalar cannot hide what follows it.
pub(super) fn too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut prev = b'\n';
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        column += 1;
        if c == '\n' {
            (line, column, comment, prev) = (line + 1, 0, false, b'\n');
            continue;
        }
        if comment || !c.is_ascii() {
            prev = b'x';
            continue;
        }
        let b = c as u8;
        match quote {
            Some(b'"') if b == b'\\' => {
                if chars.next_if(|&(_, n)| n != '\n').is_some() {
                    column += 1;
                }
            }
            Some(q) if b == q => {
                if q == b'\'' && chars.next_if(|&(_, n)| n == '\'').is_some() {
                    column += 1;
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None => match b {
                b'#' if prev == b' ' || prev == b'\t' || prev == b'\n' => comment = true,
                b'"' | b'\'' if matches!(prev, b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':' | b'-' | b'?') => {
                    quote = Some(b);
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((line, column));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        // Indentation keeps "start of line" for the quote and comment rules.
        if !(prev == b'\n' && (b == b' ' || b == b'\t')) {
            prev = b;
        }
    }
    None
}
