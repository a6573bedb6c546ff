//! The part of Data Factory's expression language the shipped pipelines use, evaluated as ADF
//! evaluates it before it writes a Custom activity's activity.json
//! (https://learn.microsoft.com/azure/data-factory/control-flow-expression-language-functions):
//! a string starting with `@` (`@@` escapes a literal `@`) or a `{"value": "@…", "type":
//! "Expression"}` object; function calls `concat`, `if`, `empty`, `string`, `float`, `int`,
//! `div`, `range`, `pipeline()`, `item()`, `activity('name')`, `dataset()`; property access
//! `.name`. Anything else (string interpolation `@{…}`, another function) panics naming it, so a
//! template cannot leave the subset these tests check without a test saying so.

use serde_json::{Map, Number, Value};

/// What an expression may refer to.
pub struct Scope<'a> {
    /// The pipeline's parameters, defaults merged with the run's values.
    pub parameters: &'a Map<String, Value>,
    pub pipeline_name: &'a str,
    pub run_id: &'a str,
    /// The ForEach item, inside a ForEach.
    pub item: Option<&'a Value>,
    /// Outputs of the activities that ran, by name.
    pub outputs: &'a Map<String, Value>,
    /// A dataset's parameters, when its properties are evaluated.
    pub dataset: Option<&'a Map<String, Value>>,
}

/// A value as ADF hands it on: expressions evaluated, everything else as written (objects and
/// arrays evaluated member by member).
pub fn evaluate(value: &Value, scope: &Scope) -> Value {
    match value {
        Value::String(text) => match text.strip_prefix('@') {
            Some(rest) if rest.starts_with('@') => Value::String(rest.to_string()),
            Some(rest) => {
                assert!(!text.contains("@{"), "string interpolation is outside the tested subset: {text}");
                evaluate_text(rest, scope)
            }
            None => {
                assert!(!text.contains("@{"), "string interpolation is outside the tested subset: {text}");
                value.clone()
            }
        },
        Value::Object(map) if map.get("type") == Some(&Value::from("Expression")) => {
            let text = map["value"].as_str().expect("an Expression's value is a string");
            evaluate(&Value::String(text.to_string()), scope)
        }
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), evaluate(v, scope))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| evaluate(v, scope)).collect()),
        _ => value.clone(),
    }
}

/// One expression, without its leading `@`.
pub fn evaluate_text(text: &str, scope: &Scope) -> Value {
    evaluate_calls(text, &mut |name, args| call(name, args, scope, text))
}

/// An expression of this grammar (literals, calls, `.property`, `[index]`; ARM template
/// expressions share it), with each function call answered by `call`.
pub fn evaluate_calls(text: &str, call: &mut dyn FnMut(&str, &[Value]) -> Value) -> Value {
    let mut parser = Parser { tokens: tokenize(text), at: 0, text };
    let expr = parser.expression();
    assert!(parser.at == parser.tokens.len(), "unexpected {:?} in `{text}`", parser.tokens.get(parser.at));
    eval(&expr, call, text)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(Value),
    Punct(char),
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                assert!(i < chars.len(), "unterminated string in `{text}`");
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        s.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            tokens.push(Token::Str(s));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            let number = if literal.contains('.') {
                Value::Number(Number::from_f64(literal.parse().unwrap()).unwrap())
            } else {
                Value::from(literal.parse::<i64>().unwrap())
            };
            tokens.push(Token::Num(number));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if "(),.[]".contains(c) {
            tokens.push(Token::Punct(c));
            i += 1;
        } else {
            panic!("character {c:?} is outside the tested subset: `{text}`");
        }
    }
    tokens
}

#[derive(Debug)]
enum Expr {
    Literal(Value),
    Call(String, Vec<Expr>),
    Property(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
}

struct Parser<'t> {
    tokens: Vec<Token>,
    at: usize,
    text: &'t str,
}

impl Parser<'_> {
    fn next(&mut self) -> Token {
        let token = self.tokens.get(self.at).cloned().unwrap_or_else(|| panic!("`{}` ends too soon", self.text));
        self.at += 1;
        token
    }

    fn peek_punct(&self, c: char) -> bool {
        self.tokens.get(self.at) == Some(&Token::Punct(c))
    }

    fn expect_punct(&mut self, c: char) {
        let token = self.next();
        assert_eq!(token, Token::Punct(c), "`{}`: expected {c:?}", self.text);
    }

    fn expression(&mut self) -> Expr {
        let mut expr = match self.next() {
            Token::Str(s) => Expr::Literal(Value::String(s)),
            Token::Num(n) => Expr::Literal(n),
            Token::Ident(name) => {
                self.expect_punct('(');
                let mut args = Vec::new();
                if !self.peek_punct(')') {
                    loop {
                        args.push(self.expression());
                        if !self.peek_punct(',') {
                            break;
                        }
                        self.expect_punct(',');
                    }
                }
                self.expect_punct(')');
                Expr::Call(name, args)
            }
            other => panic!("`{}`: unexpected {other:?}", self.text),
        };
        loop {
            if self.peek_punct('.') {
                self.expect_punct('.');
                match self.next() {
                    Token::Ident(name) => expr = Expr::Property(Box::new(expr), name),
                    other => panic!("`{}`: a property name, not {other:?}", self.text),
                }
            } else if self.peek_punct('[') {
                self.expect_punct('[');
                let index = self.expression();
                self.expect_punct(']');
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else {
                return expr;
            }
        }
    }
}

fn eval(expr: &Expr, call: &mut dyn FnMut(&str, &[Value]) -> Value, text: &str) -> Value {
    match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Property(inner, name) => {
            let value = eval(inner, call, text);
            value.get(name).cloned().unwrap_or_else(|| panic!("`{text}`: {value} has no property {name}"))
        }
        Expr::Index(inner, index) => {
            let value = eval(inner, call, text);
            let index = eval(index, call, text);
            let found = match &index {
                Value::String(key) => value.get(key),
                Value::Number(n) => value.get(n.as_u64().unwrap_or(u64::MAX) as usize),
                _ => None,
            };
            found.cloned().unwrap_or_else(|| panic!("`{text}`: {value} has no [{index}]"))
        }
        Expr::Call(name, args) => {
            let args: Vec<Value> = args.iter().map(|a| eval(a, call, text)).collect();
            call(name, &args)
        }
    }
}

fn call(name: &str, args: &[Value], scope: &Scope, text: &str) -> Value {
    let arity = |n: usize| assert_eq!(args.len(), n, "`{text}`: {name} takes {n} arguments");
    match name {
        "pipeline" => {
            arity(0);
            serde_json::json!({
                "parameters": scope.parameters,
                "Pipeline": scope.pipeline_name,
                "RunId": scope.run_id,
            })
        }
        "item" => {
            arity(0);
            scope.item.cloned().unwrap_or_else(|| panic!("`{text}`: item() outside a ForEach"))
        }
        "dataset" => {
            arity(0);
            Value::Object(scope.dataset.cloned().unwrap_or_else(|| panic!("`{text}`: dataset() outside a dataset")))
        }
        "activity" => {
            arity(1);
            let activity = args[0].as_str().unwrap_or_else(|| panic!("`{text}`: activity() takes a name"));
            let output = scope.outputs.get(activity).unwrap_or_else(|| panic!("`{text}`: {activity} has not run"));
            serde_json::json!({ "output": output })
        }
        "concat" => {
            let mut out = String::new();
            for a in args {
                out.push_str(a.as_str().unwrap_or_else(|| panic!("`{text}`: concat of a non-string {a}")));
            }
            Value::String(out)
        }
        "if" => {
            arity(3);
            let condition = args[0].as_bool().unwrap_or_else(|| panic!("`{text}`: if() needs a boolean"));
            if condition {
                args[1].clone()
            } else {
                args[2].clone()
            }
        }
        "empty" => {
            arity(1);
            Value::Bool(match &args[0] {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                other => panic!("`{text}`: empty() of {other}"),
            })
        }
        "string" => {
            arity(1);
            Value::String(match &args[0] {
                Value::String(s) => s.clone(),
                Value::Number(n) => {
                    n.as_i64().map(|i| i.to_string()).unwrap_or_else(|| n.as_f64().unwrap().to_string())
                }
                other => other.to_string(),
            })
        }
        "float" => {
            arity(1);
            let f = match &args[0] {
                Value::Number(n) => n.as_f64().unwrap(),
                Value::String(s) => s.parse().unwrap_or_else(|_| panic!("`{text}`: float() of {s:?}")),
                other => panic!("`{text}`: float() of {other}"),
            };
            Value::Number(Number::from_f64(f).unwrap())
        }
        "int" => {
            arity(1);
            Value::from(match &args[0] {
                Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("`{text}`: int() of {n}")),
                Value::String(s) => s.parse::<i64>().unwrap_or_else(|_| panic!("`{text}`: int() of {s:?}")),
                other => panic!("`{text}`: int() of {other}"),
            })
        }
        "div" => {
            arity(2);
            match (args[0].as_i64(), args[1].as_i64()) {
                (Some(a), Some(b)) => Value::from(a / b),
                _ => {
                    let (a, b) = (args[0].as_f64().unwrap(), args[1].as_f64().unwrap());
                    Value::Number(Number::from_f64(a / b).unwrap())
                }
            }
        }
        "range" => {
            arity(2);
            let (start, count) = (args[0].as_i64().unwrap(), args[1].as_i64().unwrap());
            Value::Array((start..start + count).map(Value::from).collect())
        }
        other => panic!("`{text}`: function {other}() is outside the tested subset"),
    }
}
