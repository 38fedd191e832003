//! Tokens of the condition language: Go's expression tokens, minus the ones
//! the supported subset never uses, which are rejected here with a reason.

use super::PredicateError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Eof,
}

impl Tok {
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier \"{s}\""),
            Tok::Str(s) if s.chars().count() > 40 => {
                let head: String = s.chars().take(40).collect();
                format!("string {head:?}...")
            }
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Dot => "\".\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::LBracket => "\"[\"".into(),
            Tok::RBracket => "\"]\"".into(),
            Tok::Not => "\"!\"".into(),
            Tok::And => "\"&&\"".into(),
            Tok::Or => "\"||\"".into(),
            Tok::Eq => "\"==\"".into(),
            Tok::Ne => "\"!=\"".into(),
            Tok::Eof => "end of condition".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// Byte offset of the token's first character.
    pub(super) pos: usize,
}

/// Splits `src` into tokens, always ending with `Tok::Eof`.
pub(super) fn lex(src: &str) -> Result<Vec<Token>, PredicateError> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    i += 1;
                }
                Tok::Ident(src[start..i].to_owned())
            }
            b'"' => {
                let (s, end) = lex_quoted(src, start)?;
                i = end;
                Tok::Str(s)
            }
            b'`' => {
                let body = &src[start + 1..];
                let Some(len) = body.find('`') else {
                    return Err(PredicateError::at(src, start, "unterminated raw string"));
                };
                i = start + 1 + len + 1;
                // Go drops carriage returns from raw strings.
                Tok::Str(body[..len].replace('\r', ""))
            }
            b'0'..=b'9' => {
                return Err(
                    PredicateError::at(src, start, "number literals are not supported")
                        .hint("write values as double-quoted strings, e.g. \"42\""),
                );
            }
            b'\'' => {
                return Err(PredicateError::at(
                    src,
                    start,
                    "single-quoted literals are not supported",
                )
                .hint("use double quotes for strings"));
            }
            b'.' | b',' | b'(' | b')' | b'[' | b']' => {
                i += 1;
                match c {
                    b'.' => Tok::Dot,
                    b',' => Tok::Comma,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'[' => Tok::LBracket,
                    _ => Tok::RBracket,
                }
            }
            b'!' if next == Some(b'=') => {
                i += 2;
                Tok::Ne
            }
            b'!' => {
                i += 1;
                Tok::Not
            }
            b'=' if next == Some(b'=') => {
                i += 2;
                Tok::Eq
            }
            b'&' if next == Some(b'&') => {
                i += 2;
                Tok::And
            }
            b'|' if next == Some(b'|') => {
                i += 2;
                Tok::Or
            }
            b'=' | b'&' | b'|' | b'<' | b'>' | b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'~'
            | b':' | b'?' => {
                return Err(PredicateError::at(
                    src,
                    start,
                    format!("operator \"{}\" is not supported", char::from(c)),
                )
                .hint("supported operators: !, &&, ||, ==, !="));
            }
            _ => {
                let ch = src[start..].chars().next().unwrap_or('\u{fffd}');
                return Err(PredicateError::at(
                    src,
                    start,
                    format!("unexpected character {ch:?}"),
                ));
            }
        };
        toks.push(Token { tok, pos: start });
    }
    toks.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(toks)
}

/// Reads the double-quoted Go string literal starting at byte `start`;
/// returns its value and the byte offset just past the closing quote.
fn lex_quoted(src: &str, start: usize) -> Result<(String, usize), PredicateError> {
    let err = |pos: usize, reason: String| PredicateError::at(src, pos, reason);
    let unterminated = || err(start, "unterminated string literal".into());
    let mut out = String::new();
    let mut chars = src[start + 1..]
        .char_indices()
        .map(|(o, c)| (o + start + 1, c));
    loop {
        let (p, c) = chars.next().ok_or_else(unterminated)?;
        match c {
            '"' => return Ok((out, p + 1)),
            '\n' => {
                return Err(err(p, "newline in string literal".into())
                    .hint("write it as \\n, or close the string"));
            }
            '\\' => {
                let (_, e) = chars.next().ok_or_else(unterminated)?;
                let simple = match e {
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(s) = simple {
                    out.push(s);
                    continue;
                }
                let (radix, digits, first) = match e {
                    'x' => (16, 2, None),
                    'u' => (16, 4, None),
                    'U' => (16, 8, None),
                    '0'..='7' => (8, 2, e.to_digit(8)),
                    _ => {
                        let shown = if e.is_control() {
                            e.escape_debug().to_string()
                        } else {
                            e.to_string()
                        };
                        return Err(err(p, format!("unknown escape sequence \"\\{shown}\"")));
                    }
                };
                let mut value = first.unwrap_or(0);
                for _ in 0..digits {
                    let d = chars
                        .next()
                        .and_then(|(_, d)| d.to_digit(radix))
                        .ok_or_else(|| {
                            let n = digits + usize::from(first.is_some());
                            let kind = if radix == 8 { "octal" } else { "hex" };
                            err(
                                p,
                                format!("escape \"\\{e}\" needs exactly {n} {kind} digits"),
                            )
                        })?;
                    value = value * radix + d;
                }
                // \x and octal escapes are single bytes in Go; above 0x7f they
                // would be invalid UTF-8 on their own.
                let byte_escape = matches!(e, 'x' | '0'..='7');
                match char::from_u32(value) {
                    Some(ch) if !byte_escape || value < 0x80 => out.push(ch),
                    _ if byte_escape => {
                        return Err(err(
                            p,
                            format!("byte escape for 0x{value:x} is not valid UTF-8 on its own"),
                        )
                        .hint(format!("write the character as \\u{value:04x}")));
                    }
                    _ => {
                        return Err(err(
                            p,
                            format!("escape for 0x{value:x} is not a Unicode character"),
                        ));
                    }
                }
            }
            c => out.push(c),
        }
    }
}
