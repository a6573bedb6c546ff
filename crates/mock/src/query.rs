//! A parser and evaluator for the subset of the ADT query language the mock answers:
//!
//! ```text
//! SELECT * | COUNT() | <alias>
//! FROM DIGITALTWINS | RELATIONSHIPS [<alias>]
//! [WHERE <condition> [AND <condition>]…]
//! condition := <path> = <literal> | IS_OF_MODEL([<alias>,] '<dtmi>' [, exact]) | ( <conditions> )
//! path      := [<alias>.]$dtId | $etag | $metadata.$model | <property>[.<field>]…   (twins)
//!              [<alias>.]$sourceId | $targetId | $relationshipName | $relationshipId | $etag | <property>…
//! literal   := 'text' | "text" | number | true | false
//! ```
//!
//! Keywords are case-insensitive; property names are not. Anything else ADT accepts (OR, NOT,
//! JOIN, TOP, projections, other functions and operators) is refused with a clear
//! `SqlQueryError`, never answered wrongly.

use std::fmt;

use serde_json::Value;

use crate::validate::json_equal;

/// ADT's limit on the length of a query (characters).
pub const MAX_QUERY_CHARS: usize = 8000;
/// ADT's limit on AND/OR expressions in one query.
pub const MAX_CONDITIONS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    DigitalTwins,
    Relationships,
}

/// What each result row is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// The twin or relationship itself.
    All,
    /// One row `{"COUNT": n}`.
    Count,
    /// `{"<alias>": <twin or relationship>}`.
    Alias(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The value at `path` equals `value` (numbers by value).
    Equals { path: Vec<String>, value: Value },
    /// The twin's model is `model`, or (unless `exact`) extends it.
    IsOfModel { model: String, exact: bool },
}

/// A parsed query. Conditions are ANDed.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    pub collection: Collection,
    pub alias: Option<String>,
    pub conditions: Vec<Condition>,
}

/// Why a query was refused: ADT's parse-error wording, or a plain statement of what the mock
/// does not support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub line: usize,
    pub position: usize,
    pub message: String,
    pub unsupported: bool,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unsupported {
            write!(
                f,
                "The mock ADT does not support this query: {} (line {}, position {}). It supports SELECT *, SELECT COUNT() or SELECT <alias> FROM DIGITALTWINS or RELATIONSHIPS [alias] with WHERE conditions joined by AND: <path> = <literal> and IS_OF_MODEL('<dtmi>'[, exact]).",
                self.message, self.line, self.position
            )
        } else {
            write!(
                f,
                "SQL query parse failed: SQL Parser Error, Line={}, Position={}, Message={}",
                self.line, self.position, self.message
            )
        }
    }
}

impl std::error::Error for QueryError {}

/// A row a query can be evaluated against.
pub trait QueryRow {
    /// The value at a path (already stripped of the alias), if set.
    fn field(&self, path: &[String]) -> Option<Value>;
    /// The twin's model; `None` for relationships.
    fn model(&self) -> Option<&str>;
}

impl Query {
    /// True when the row satisfies every condition. `is_of_model(model, ancestor, exact)`
    /// answers IS_OF_MODEL with the instance's models.
    pub fn matches<R: QueryRow + ?Sized>(&self, row: &R, is_of_model: &dyn Fn(&str, &str, bool) -> bool) -> bool {
        self.conditions.iter().all(|condition| match condition {
            Condition::Equals { path, value } => row.field(path).is_some_and(|found| json_equal(&found, value)),
            Condition::IsOfModel { model, exact } => row.model().is_some_and(|m| is_of_model(m, model, *exact)),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Text(String),
    Number(serde_json::Number),
    Symbol(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    /// Character offset in the query.
    at: usize,
}

/// Parses a query text.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    let located = Locator::new(text);
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(located.error(0, format!("the query is longer than {MAX_QUERY_CHARS} characters"), false));
    }
    let tokens = tokenize(text, &located)?;
    let mut parser = Parser { tokens, next: 0, locator: located };
    parser.query()
}

/// Turns character offsets into ADT's Line/Position.
struct Locator {
    line_starts: Vec<usize>,
}

impl Locator {
    fn new(text: &str) -> Locator {
        let mut line_starts = vec![0];
        for (i, c) in text.chars().enumerate() {
            if c == '\n' {
                line_starts.push(i + 1);
            }
        }
        Locator { line_starts }
    }

    fn error(&self, at: usize, message: impl Into<String>, unsupported: bool) -> QueryError {
        let line = self.line_starts.iter().rposition(|&start| start <= at).unwrap_or(0);
        QueryError { line: line + 1, position: at - self.line_starts[line], message: message.into(), unsupported }
    }
}

fn tokenize(text: &str, locator: &Locator) -> Result<Vec<Spanned>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                i += 1;
            }
            Token::Ident(chars[start..i].iter().collect())
        } else if c == '\'' || c == '"' {
            i += 1;
            let mut value = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(locator.error(start, "unterminated string literal", false)),
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&escaped @ ('\'' | '"' | '\\')) => value.push(escaped),
                            _ => {
                                return Err(locator.error(
                                    i,
                                    "only \\', \\\" and \\\\ escapes are allowed in a string",
                                    false,
                                ))
                            }
                        }
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            Token::Text(value)
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-')) {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            match serde_json::from_str::<serde_json::Number>(&literal) {
                Ok(n) => Token::Number(n),
                Err(_) => return Err(locator.error(start, format!("'{literal}' is not a number"), false)),
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let symbol = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("<>"),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(symbol) = symbol {
                i += 2;
                Token::Symbol(symbol)
            } else {
                i += 1;
                Token::Symbol(match c {
                    '*' => "*",
                    '(' => "(",
                    ')' => ")",
                    ',' => ",",
                    '.' => ".",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    '[' => "[",
                    ']' => "]",
                    other => return Err(locator.error(start, format!("token recognition error at: '{other}'"), false)),
                })
            }
        };
        tokens.push(Spanned { token, at: start });
    }
    tokens.push(Spanned { token: Token::End, at: chars.len() });
    Ok(tokens)
}

/// Words that are keywords of the ADT query language (they cannot be aliases).
const KEYWORDS: [&str; 17] = [
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "JOIN", "RELATED", "TOP", "AS", "IN", "NIN", "ORDER", "BY", "GROUP",
    "MATCH", "COUNT",
];

fn is_keyword(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    locator: Locator,
}

impl Parser {
    fn peek(&self) -> &Spanned {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.next + ahead).min(self.tokens.len() - 1)].token
    }

    fn advance(&mut self) -> Spanned {
        let token = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    fn parse_error(&self, message: impl Into<String>) -> QueryError {
        self.locator.error(self.peek().at, message, false)
    }

    fn unsupported(&self, at: usize, what: impl Into<String>) -> QueryError {
        self.locator.error(at, what, true)
    }

    fn shown(&self) -> String {
        match &self.peek().token {
            Token::Ident(s) => s.clone(),
            Token::Text(s) => format!("'{s}'"),
            Token::Number(n) => n.to_string(),
            Token::Symbol(s) => s.to_string(),
            Token::End => "<EOF>".to_string(),
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), QueryError> {
        match &self.peek().token {
            Token::Ident(word) if is_keyword(word, keyword) => {
                self.advance();
                Ok(())
            }
            _ => Err(self.parse_error(format!("missing {keyword} at '{}'", self.shown()))),
        }
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), QueryError> {
        match &self.peek().token {
            Token::Symbol(s) if *s == symbol => {
                self.advance();
                Ok(())
            }
            _ => Err(self.parse_error(format!("missing '{symbol}' at '{}'", self.shown()))),
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.expect_keyword("SELECT")?;
        let select = self.select()?;
        self.expect_keyword("FROM")?;
        let collection_at = self.peek().at;
        let collection = match self.advance().token {
            Token::Ident(word) if word.eq_ignore_ascii_case("DIGITALTWINS") => Collection::DigitalTwins,
            Token::Ident(word) if word.eq_ignore_ascii_case("RELATIONSHIPS") => Collection::Relationships,
            Token::Ident(word) => {
                return Err(self.locator.error(
                    collection_at,
                    format!("'{word}' is not a collection; use DIGITALTWINS or RELATIONSHIPS"),
                    false,
                ))
            }
            _ => return Err(self.locator.error(collection_at, "missing collection name after FROM", false)),
        };
        let alias = match &self.peek().token {
            Token::Ident(word) if is_keyword(word, "JOIN") => return Err(self.unsupported(self.peek().at, "JOIN")),
            Token::Ident(word) if is_keyword(word, "AS") => return Err(self.unsupported(self.peek().at, "AS in FROM")),
            Token::Ident(word) if !KEYWORDS.iter().any(|k| is_keyword(word, k)) => {
                let alias = word.clone();
                self.advance();
                Some(alias)
            }
            _ => None,
        };
        if let Select::Alias(name) = &select {
            if alias.as_deref() != Some(name.as_str()) {
                return Err(self.locator.error(
                    0,
                    format!("'{name}' in SELECT is not the alias of the collection"),
                    false,
                ));
            }
        }
        let mut query = Query { select, collection, alias, conditions: Vec::new() };
        match &self.peek().token {
            Token::End => return Ok(query),
            Token::Ident(word) if is_keyword(word, "WHERE") => {
                self.advance();
            }
            Token::Ident(word) if is_keyword(word, "JOIN") => return Err(self.unsupported(self.peek().at, "JOIN")),
            Token::Ident(word) if KEYWORDS.iter().any(|k| is_keyword(word, k)) => {
                return Err(self.unsupported(self.peek().at, format!("{} after FROM", word.to_uppercase())))
            }
            _ => return Err(self.parse_error(format!("extraneous input '{}' expecting WHERE or <EOF>", self.shown()))),
        }
        self.conditions(&mut query, 0)?;
        match &self.peek().token {
            Token::End => {}
            Token::Ident(word) if is_keyword(word, "OR") => return Err(self.unsupported(self.peek().at, "OR")),
            _ => return Err(self.parse_error(format!("extraneous input '{}' expecting AND or <EOF>", self.shown()))),
        }
        if query.conditions.len() > MAX_CONDITIONS {
            return Err(self.locator.error(0, format!("the query has more than {MAX_CONDITIONS} conditions"), false));
        }
        Ok(query)
    }

    fn select(&mut self) -> Result<Select, QueryError> {
        let at = self.peek().at;
        match self.peek().token.clone() {
            Token::Symbol("*") => {
                self.advance();
                Ok(Select::All)
            }
            Token::Ident(word) if is_keyword(&word, "COUNT") => {
                self.advance();
                self.expect_symbol("(")?;
                if !matches!(self.peek().token, Token::Symbol(")")) {
                    return Err(self.unsupported(self.peek().at, "COUNT with an argument; use COUNT()"));
                }
                self.advance();
                Ok(Select::Count)
            }
            Token::Ident(word) if is_keyword(&word, "TOP") => Err(self.unsupported(at, "TOP")),
            Token::Ident(word) if is_keyword(&word, "FROM") => Err(self.parse_error("missing projection before FROM")),
            Token::Ident(word) => {
                self.advance();
                match &self.peek().token {
                    Token::Ident(next) if is_keyword(next, "FROM") => Ok(Select::Alias(word)),
                    _ => Err(self.unsupported(at, "projections other than *, COUNT() or the collection alias")),
                }
            }
            _ => Err(self.parse_error(format!("mismatched input '{}' expecting a projection", self.shown()))),
        }
    }

    /// `condition (AND condition)*`, appending to `query.conditions`.
    fn conditions(&mut self, query: &mut Query, depth: usize) -> Result<(), QueryError> {
        loop {
            self.condition(query, depth)?;
            match &self.peek().token {
                Token::Ident(word) if is_keyword(word, "AND") => {
                    self.advance();
                }
                _ => return Ok(()),
            }
        }
    }

    fn condition(&mut self, query: &mut Query, depth: usize) -> Result<(), QueryError> {
        let at = self.peek().at;
        match self.peek().token.clone() {
            Token::Symbol("(") => {
                if depth >= MAX_CONDITIONS {
                    return Err(self.parse_error("parentheses are nested too deeply"));
                }
                self.advance();
                self.conditions(query, depth + 1)?;
                if let Token::Ident(word) = &self.peek().token {
                    if is_keyword(word, "OR") {
                        return Err(self.unsupported(self.peek().at, "OR"));
                    }
                }
                self.expect_symbol(")")
            }
            Token::Ident(word) if is_keyword(&word, "NOT") => Err(self.unsupported(at, "NOT")),
            Token::Ident(word) if word.eq_ignore_ascii_case("IS_OF_MODEL") => {
                self.advance();
                let condition = self.is_of_model(query)?;
                query.conditions.push(condition);
                Ok(())
            }
            Token::Ident(word) if matches!(self.peek_at(1), Token::Symbol("(")) => {
                Err(self.unsupported(at, format!("the function {word}")))
            }
            Token::Ident(_) => {
                let path = self.path(query)?;
                let operator_at = self.peek().at;
                match self.advance().token {
                    Token::Symbol("=") => {}
                    Token::Symbol(op) => {
                        return Err(self.unsupported(operator_at, format!("the operator {op}; only = is supported")))
                    }
                    Token::Ident(word) if is_keyword(&word, "IN") || is_keyword(&word, "NIN") => {
                        return Err(self.unsupported(operator_at, word.to_uppercase()))
                    }
                    _ => return Err(self.locator.error(operator_at, "missing comparison operator", false)),
                }
                let value = self.literal()?;
                query.conditions.push(Condition::Equals { path, value });
                Ok(())
            }
            _ => Err(self.parse_error(format!("mismatched input '{}' expecting a condition", self.shown()))),
        }
    }

    fn is_of_model(&mut self, query: &Query) -> Result<Condition, QueryError> {
        let at = self.peek().at;
        if query.collection != Collection::DigitalTwins {
            return Err(self.locator.error(at, "IS_OF_MODEL applies to DIGITALTWINS only", false));
        }
        self.expect_symbol("(")?;
        if let Token::Ident(word) = self.peek().token.clone() {
            if query.alias.as_deref() != Some(word.as_str()) {
                return Err(self.parse_error(format!("'{word}' is not the collection alias")));
            }
            self.advance();
            self.expect_symbol(",")?;
        }
        let model = match self.advance().token {
            Token::Text(model) => model,
            _ => return Err(self.locator.error(at, "IS_OF_MODEL needs a model id in quotes", false)),
        };
        let mut exact = false;
        if matches!(self.peek().token, Token::Symbol(",")) {
            self.advance();
            match self.advance().token {
                Token::Ident(word) if word.eq_ignore_ascii_case("exact") => exact = true,
                _ => {
                    return Err(self.locator.error(at, "the third argument of IS_OF_MODEL can only be 'exact'", false))
                }
            }
        }
        self.expect_symbol(")")?;
        Ok(Condition::IsOfModel { model, exact })
    }

    /// `[alias.]segment(.segment)*`, checked against the collection's fields.
    fn path(&mut self, query: &Query) -> Result<Vec<String>, QueryError> {
        let at = self.peek().at;
        let mut segments = Vec::new();
        loop {
            match self.advance().token {
                Token::Ident(segment) => segments.push(segment),
                _ => return Err(self.locator.error(at, "a property path must be names joined by '.'", false)),
            }
            match &self.peek().token {
                Token::Symbol(".") => {
                    self.advance();
                }
                Token::Symbol("[") => return Err(self.unsupported(self.peek().at, "[ ] property access")),
                _ => break,
            }
        }
        match &query.alias {
            Some(alias) if segments.first() == Some(alias) && segments.len() > 1 => {
                segments.remove(0);
            }
            Some(alias) => {
                return Err(self.locator.error(
                    at,
                    format!("refer to properties through the alias, as {alias}.{}", segments.join(".")),
                    false,
                ))
            }
            None if segments.len() > 1
                && (segments[0].eq_ignore_ascii_case("DIGITALTWINS")
                    || segments[0].eq_ignore_ascii_case("RELATIONSHIPS")) =>
            {
                return Err(self.unsupported(at, "collection-qualified paths; declare an alias instead"))
            }
            None => {}
        }
        self.check_system_path(query.collection, &segments, at)?;
        Ok(segments)
    }

    /// Only the `$` fields the mock knows; any other `$` path is refused rather than answered
    /// as "not set".
    fn check_system_path(&self, collection: Collection, path: &[String], at: usize) -> Result<(), QueryError> {
        if !path.iter().any(|s| s.starts_with('$')) {
            return Ok(());
        }
        let known: &[&[&str]] = match collection {
            Collection::DigitalTwins => &[&["$dtId"], &["$etag"], &["$metadata", "$model"]],
            Collection::Relationships => {
                &[&["$sourceId"], &["$targetId"], &["$relationshipName"], &["$relationshipId"], &["$etag"]]
            }
        };
        if known.iter().any(|k| k.len() == path.len() && k.iter().zip(path).all(|(a, b)| a == b)) {
            Ok(())
        } else {
            Err(self.unsupported(at, format!("the path {}", path.join("."))))
        }
    }

    fn literal(&mut self) -> Result<Value, QueryError> {
        let at = self.peek().at;
        match self.advance().token {
            Token::Text(text) => Ok(Value::String(text)),
            Token::Number(n) => Ok(Value::Number(n)),
            Token::Ident(word) if word.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Token::Ident(word) if word.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            Token::Ident(word) if word.eq_ignore_ascii_case("null") => {
                Err(self.unsupported(at, "comparison with null"))
            }
            Token::Ident(_) => Err(self.unsupported(at, "comparing two properties")),
            Token::Symbol("[") => Err(self.unsupported(at, "array literals")),
            _ => Err(self.locator.error(at, "missing literal after '='", false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eq(path: &[&str], value: Value) -> Condition {
        Condition::Equals { path: path.iter().map(|s| s.to_string()).collect(), value }
    }

    #[test]
    fn select_all_and_count() {
        let q = parse("SELECT * FROM DIGITALTWINS").unwrap();
        assert_eq!(
            (q.select, q.collection, q.alias, q.conditions.len()),
            (Select::All, Collection::DigitalTwins, None, 0)
        );
        let q = parse("select count() from relationships").unwrap();
        assert_eq!((q.select, q.collection), (Select::Count, Collection::Relationships));
    }

    #[test]
    fn where_with_and_system_fields_and_literals() {
        let q = parse("SELECT * FROM DIGITALTWINS WHERE $dtId = 'a' AND $metadata.$model = \"dtmi:x;1\" AND temp = -1.5 AND on = TRUE AND pos.lat = 3")
            .unwrap();
        assert_eq!(
            q.conditions,
            vec![
                eq(&["$dtId"], json!("a")),
                eq(&["$metadata", "$model"], json!("dtmi:x;1")),
                eq(&["temp"], json!(-1.5)),
                eq(&["on"], json!(true)),
                eq(&["pos", "lat"], json!(3)),
            ]
        );
    }

    #[test]
    fn aliases_are_stripped_and_required() {
        let q =
            parse("SELECT T FROM DIGITALTWINS T WHERE T.$dtId = 'x' AND IS_OF_MODEL(T, 'dtmi:a;1', exact)").unwrap();
        assert_eq!(q.select, Select::Alias("T".into()));
        assert_eq!(
            q.conditions,
            vec![eq(&["$dtId"], json!("x")), Condition::IsOfModel { model: "dtmi:a;1".into(), exact: true }]
        );
        let q = parse("SELECT * FROM DIGITALTWINS T WHERE IS_OF_MODEL('dtmi:a;1')").unwrap();
        assert_eq!(q.conditions, vec![Condition::IsOfModel { model: "dtmi:a;1".into(), exact: false }]);
        assert!(parse("SELECT * FROM DIGITALTWINS T WHERE $dtId = 'x'").unwrap_err().message.contains("T.$dtId"));
        assert!(parse("SELECT X FROM DIGITALTWINS T").is_err());
    }

    #[test]
    fn parenthesised_and_groups_flatten() {
        let q = parse("SELECT * FROM RELATIONSHIPS R WHERE (R.$sourceId = 'a' AND (R.$relationshipName = 'has')) AND R.$targetId = 'b'").unwrap();
        assert_eq!(q.conditions.len(), 3);
        assert_eq!(q.conditions[1], eq(&["$relationshipName"], json!("has")));
    }

    #[test]
    fn parse_errors_use_adt_wording_and_positions() {
        let e = parse("foo").unwrap_err();
        assert!(!e.unsupported);
        assert_eq!((e.line, e.position), (1, 0));
        assert!(
            e.to_string().starts_with(
                "SQL query parse failed: SQL Parser Error, Line=1, Position=0, Message=missing SELECT at 'foo'"
            ),
            "{e}"
        );
        let e = parse("SELECT *\nFROM TWINS").unwrap_err();
        assert_eq!((e.line, e.position), (2, 5));
        for bad in [
            "SELECT * FROM DIGITALTWINS WHERE",
            "SELECT * FROM DIGITALTWINS WHERE a = ",
            "SELECT * FROM DIGITALTWINS WHERE a = 'x",
            "SELECT * FROM DIGITALTWINS WHERE a = 1 b",
            "SELECT * FROM DIGITALTWINS WHERE a # 1",
            "SELECT * FROM RELATIONSHIPS WHERE IS_OF_MODEL('dtmi:a;1')",
            "SELECT * DIGITALTWINS",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.unsupported, "{bad}: {e}");
        }
    }

    #[test]
    fn unsupported_features_are_refused_not_misanswered() {
        for (query, what) in [
            ("SELECT * FROM DIGITALTWINS WHERE a = 1 OR b = 2", "OR"),
            ("SELECT * FROM DIGITALTWINS WHERE NOT a = 1", "NOT"),
            ("SELECT * FROM DIGITALTWINS WHERE a > 1", "operator >"),
            ("SELECT * FROM DIGITALTWINS WHERE a != 1", "operator !="),
            ("SELECT TOP(5) * FROM DIGITALTWINS", "TOP"),
            ("SELECT T.name FROM DIGITALTWINS T", "projections"),
            ("SELECT T, R FROM DIGITALTWINS T JOIN R RELATED T.has", "projections"),
            ("SELECT * FROM DIGITALTWINS T JOIN R RELATED T.has", "JOIN"),
            ("SELECT * FROM DIGITALTWINS WHERE STARTSWITH(name, 'a')", "STARTSWITH"),
            ("SELECT * FROM DIGITALTWINS WHERE IS_DEFINED(name)", "IS_DEFINED"),
            ("SELECT * FROM DIGITALTWINS WHERE $metadata.name.lastUpdateTime = 'x'", "$metadata.name.lastUpdateTime"),
            ("SELECT * FROM DIGITALTWINS WHERE name IN ['a']", "IN"),
            ("SELECT * FROM DIGITALTWINS WHERE name = null", "null"),
            ("SELECT * FROM DIGITALTWINS WHERE DIGITALTWINS.name = 'a'", "collection-qualified"),
            ("SELECT * FROM DIGITALTWINS WHERE (a = 1 OR b = 2)", "OR"),
        ] {
            let e = parse(query).unwrap_err();
            assert!(e.unsupported && e.message.contains(what), "{query}: {e}");
            assert!(e.to_string().contains("does not support"), "{e}");
        }
    }

    #[test]
    fn size_limits() {
        let long = format!("SELECT * FROM DIGITALTWINS WHERE a = '{}'", "x".repeat(MAX_QUERY_CHARS));
        assert!(parse(&long).unwrap_err().message.contains("longer than"));
        let many = (0..=MAX_CONDITIONS).map(|i| format!("p{i} = {i}")).collect::<Vec<_>>().join(" AND ");
        assert!(parse(&format!("SELECT * FROM DIGITALTWINS WHERE {many}")).unwrap_err().message.contains("more than"));
    }

    struct Row(Value, Option<&'static str>);

    impl QueryRow for Row {
        fn field(&self, path: &[String]) -> Option<Value> {
            let mut v = &self.0;
            for s in path {
                v = v.get(s)?;
            }
            Some(v.clone())
        }
        fn model(&self) -> Option<&str> {
            self.1
        }
    }

    #[test]
    fn evaluation() {
        let row = Row(json!({"$dtId":"t1","temp":20,"pos":{"lat":1.0},"name":"A"}), Some("dtmi:child;1"));
        let models =
            |model: &str, ancestor: &str, exact: bool| model == ancestor || (!exact && ancestor == "dtmi:base;1");
        let yes = |q: &str| parse(q).unwrap().matches(&row, &models);
        assert!(yes("SELECT * FROM DIGITALTWINS WHERE temp = 20.0 AND pos.lat = 1 AND name = 'A'"));
        assert!(!yes("SELECT * FROM DIGITALTWINS WHERE name = 'a'"));
        assert!(!yes("SELECT * FROM DIGITALTWINS WHERE missing = 1"));
        assert!(!yes("SELECT * FROM DIGITALTWINS WHERE temp = '20'"));
        assert!(yes("SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:base;1')"));
        assert!(!yes("SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:base;1', exact)"));
        assert!(yes("SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:child;1', exact)"));
    }
}
