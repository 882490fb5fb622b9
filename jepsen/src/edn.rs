//! A small EDN reader: enough of the format for Jepsen, Knossos and Elle histories
//! (nil, booleans, integers, floats, strings, keywords, symbols, vectors, lists,
//! maps, sets, `;` comments, commas as whitespace, `#inst`-style tags skipped).

use std::fmt;

/// An EDN value.
#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A keyword, without the leading colon.
    Keyword(String),
    /// A symbol.
    Symbol(String),
    /// `[...]` or `(...)`.
    List(Vec<Edn>),
    /// `{...}`, in source order.
    Map(Vec<(Edn, Edn)>),
    /// `#{...}`.
    Set(Vec<Edn>),
}

impl Edn {
    /// The value under keyword `k` of a map.
    pub fn get(&self, k: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries.iter().find_map(|(key, v)| match key {
                Edn::Keyword(name) if name == k => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The keyword's name, if this is a keyword.
    pub fn as_keyword(&self) -> Option<&str> {
        match self {
            Edn::Keyword(k) => Some(k),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Edn::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Converts to JSON: keywords and symbols become strings, maps with non-string
    /// keys use their printed keys.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Edn::Nil => J::Null,
            Edn::Bool(b) => J::Bool(*b),
            Edn::Int(i) => J::from(*i),
            Edn::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => J::String(s.clone()),
            Edn::List(v) | Edn::Set(v) => J::Array(v.iter().map(Edn::to_json).collect()),
            Edn::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }
}

impl fmt::Display for Edn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edn::Nil => write!(f, "nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Float(x) => write!(f, "{x}"),
            Edn::Str(s) => write!(f, "{s:?}"),
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => write!(f, "{s}"),
            Edn::List(v) | Edn::Set(v) => {
                write!(f, "[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
            Edn::Map(m) => {
                write!(f, "{{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// A syntax error with its byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EDN syntax error at byte {offset}: {message}")]
pub struct EdnError {
    /// Where.
    pub offset: usize,
    /// What.
    pub message: String,
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn err<T>(&self, m: &str) -> Result<T, EdnError> {
        Err(EdnError { offset: self.at, message: m.to_string() })
    }

    fn skip_ws(&mut self) {
        while self.at < self.s.len() {
            match self.s[self.at] {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.at += 1,
                b';' => {
                    while self.at < self.s.len() && self.s[self.at] != b'\n' {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn token(&mut self) -> &str {
        let start = self.at;
        while self.at < self.s.len() {
            match self.s[self.at] {
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';' => break,
                _ => self.at += 1,
            }
        }
        std::str::from_utf8(&self.s[start..self.at]).unwrap_or("")
    }

    fn seq(&mut self, close: u8) -> Result<Vec<Edn>, EdnError> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.s.get(self.at) {
                None => return self.err("unclosed collection"),
                Some(c) if *c == close => {
                    self.at += 1;
                    return Ok(out);
                }
                _ => out.push(self.value()?),
            }
        }
    }

    fn value(&mut self) -> Result<Edn, EdnError> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.at) else { return self.err("unexpected end") };
        match c {
            b'[' | b'(' => {
                self.at += 1;
                Ok(Edn::List(self.seq(if c == b'[' { b']' } else { b')' })?))
            }
            b'{' => {
                self.at += 1;
                let items = self.seq(b'}')?;
                if items.len() % 2 != 0 {
                    return self.err("map with an odd number of forms");
                }
                let mut it = items.into_iter();
                let mut m = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.push((k, v));
                }
                Ok(Edn::Map(m))
            }
            b'#' => {
                self.at += 1;
                match self.s.get(self.at) {
                    Some(b'{') => {
                        self.at += 1;
                        Ok(Edn::Set(self.seq(b'}')?))
                    }
                    Some(b'_') => {
                        self.at += 1;
                        self.value()?;
                        self.value()
                    }
                    _ => {
                        // A tagged literal (#inst "...", #uuid "..."): keep the value.
                        self.token();
                        self.value()
                    }
                }
            }
            b'"' => {
                self.at += 1;
                let mut out = String::new();
                loop {
                    let Some(&c) = self.s.get(self.at) else { return self.err("unclosed string") };
                    self.at += 1;
                    match c {
                        b'"' => return Ok(Edn::Str(out)),
                        b'\\' => {
                            let Some(&e) = self.s.get(self.at) else { return self.err("bad escape") };
                            self.at += 1;
                            out.push(match e {
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                other => other as char,
                            });
                        }
                        _ => {
                            let start = self.at - 1;
                            let len = utf8_len(c);
                            self.at = start + len;
                            out.push_str(std::str::from_utf8(&self.s[start..self.at.min(self.s.len())]).unwrap_or("?"));
                        }
                    }
                }
            }
            b':' => {
                self.at += 1;
                Ok(Edn::Keyword(self.token().to_string()))
            }
            b'\\' => {
                self.at += 1;
                Ok(Edn::Str(self.token().to_string()))
            }
            _ => {
                let t = self.token().to_string();
                if t.is_empty() {
                    self.at += 1;
                    return self.err(&format!("unexpected character {:?}", c as char));
                }
                Ok(match t.as_str() {
                    "nil" => Edn::Nil,
                    "true" => Edn::Bool(true),
                    "false" => Edn::Bool(false),
                    _ => {
                        let digits = t.trim_end_matches(['N', 'M']);
                        if let Ok(i) = digits.parse::<i64>() {
                            Edn::Int(i)
                        } else if let Ok(x) = digits.parse::<f64>() {
                            Edn::Float(x)
                        } else {
                            Edn::Symbol(t)
                        }
                    }
                })
            }
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Reads every top-level form of `text`.
pub fn parse_all(text: &str) -> Result<Vec<Edn>, EdnError> {
    let mut r = Reader { s: text.as_bytes(), at: 0 };
    let mut out = Vec::new();
    loop {
        r.skip_ws();
        if r.at >= r.s.len() {
            return Ok(out);
        }
        out.push(r.value()?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_history_forms() {
        let v =
            parse_all("; comment\n[{:process 1, :type :invoke :f :cas :value [1 2]}\n {:process :nemesis :value nil}]")
                .unwrap();
        assert_eq!(v.len(), 1);
        let Edn::List(ops) = &v[0] else { panic!() };
        assert_eq!(ops[0].get("process"), Some(&Edn::Int(1)));
        assert_eq!(ops[0].get("value"), Some(&Edn::List(vec![Edn::Int(1), Edn::Int(2)])));
        assert_eq!(ops[1].get("process").and_then(Edn::as_keyword), Some("nemesis"));
        assert_eq!(parse_all("#{1 2} \"a\\\"b\" -3 1.5 true").unwrap().len(), 5);
        assert!(parse_all("[1 2").is_err());
    }
}
