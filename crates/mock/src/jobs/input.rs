//! An Import Jobs input file (ADT-REFERENCE.md §1.5): `{"Section": "Header"}` and its line,
//! then the optional sections `Models`, `Twins`, `Relationships`, in that order. Each line keeps
//! its 1-based line number, which the job's error log names.

use std::fmt;

use serde_json::Value;

/// The sections of the input, in the order the file must have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Header,
    Models,
    Twins,
    Relationships,
}

impl Section {
    fn parse(name: &str) -> Option<Section> {
        match name {
            "Header" => Some(Section::Header),
            "Models" => Some(Section::Models),
            "Twins" => Some(Section::Twins),
            "Relationships" => Some(Section::Relationships),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Section::Header => "Header",
            Section::Models => "Models",
            Section::Twins => "Twins",
            Section::Relationships => "Relationships",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of a data section: its line number and its text (not yet parsed: a bad line is an
/// error of that line, logged when it is applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub number: u64,
    pub text: &'a str,
}

/// The input, split. Lines borrow from the downloaded blob.
#[derive(Debug, Default)]
pub struct ImportInput<'a> {
    pub models: Vec<Line<'a>>,
    pub twins: Vec<Line<'a>>,
    pub relationships: Vec<Line<'a>>,
}

impl ImportInput<'_> {
    pub fn item_count(&self) -> usize {
        self.models.len() + self.twins.len() + self.relationships.len()
    }
}

/// Why the whole input was refused (the job fails before applying anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub line: u64,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Splits the input into sections. Blank lines are skipped. The file must start with the
/// Header section, and sections must come in order, each at most once.
pub fn split(text: &str) -> Result<ImportInput<'_>, InputError> {
    let mut input = ImportInput::default();
    let mut current: Option<Section> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index as u64 + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(section) = section_marker(line) {
            let section = section.map_err(|message| InputError { line: number, message })?;
            let in_order = match current {
                None => section == Section::Header,
                Some(previous) => section > previous,
            };
            if !in_order {
                return Err(InputError {
                    line: number,
                    message: format!(
                        "section {section} is out of order: the file starts with Header, then Models, Twins, Relationships, each at most once"
                    ),
                });
            }
            current = Some(section);
            continue;
        }
        let line = Line { number, text: line };
        match current {
            None => {
                return Err(InputError {
                    line: number,
                    message: "the file must start with {\"Section\": \"Header\"}".into(),
                })
            }
            Some(Section::Header) => {}
            Some(Section::Models) => input.models.push(line),
            Some(Section::Twins) => input.twins.push(line),
            Some(Section::Relationships) => input.relationships.push(line),
        }
    }
    if current.is_none() {
        return Err(InputError {
            line: 1,
            message: "the file is empty; it must start with {\"Section\": \"Header\"}".into(),
        });
    }
    Ok(input)
}

/// `Some` when the line is a section marker `{"Section": "<name>"}` (a known name or an error).
fn section_marker(line: &str) -> Option<Result<Section, String>> {
    if !line.contains("\"Section\"") {
        return None;
    }
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
        return None;
    };
    if object.len() != 1 {
        return None;
    }
    let name = object.get("Section")?;
    Some(match name.as_str().and_then(Section::parse) {
        Some(section) => Ok(section),
        None => Err(format!("unknown section {name}; the sections are Header, Models, Twins, Relationships")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_reference_example_with_line_numbers() {
        let text = "{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\"}\n{\"Section\": \"Models\"}\n{\"@id\":\"dtmi:a;1\"}\n\n{\"Section\": \"Twins\"}\n{\"$dtId\":\"t\"}\n{\"Section\": \"Relationships\"}\n{\"$dtId\":\"t\",\"$relationshipId\":\"r\"}\n";
        let input = split(text).unwrap();
        assert_eq!(input.models, vec![Line { number: 4, text: "{\"@id\":\"dtmi:a;1\"}" }]);
        assert_eq!(input.twins[0].number, 7);
        assert_eq!(input.relationships[0].number, 9);
        assert_eq!(input.item_count(), 3);
    }

    #[test]
    fn refuses_missing_header_order_and_unknown_sections() {
        assert_eq!(split("{\"$dtId\":\"t\"}").unwrap_err().line, 1);
        let out_of_order =
            split("{\"Section\": \"Header\"}\n{\"Section\": \"Twins\"}\n{\"Section\": \"Models\"}").unwrap_err();
        assert_eq!(out_of_order.line, 3);
        assert!(out_of_order.message.contains("out of order"), "{out_of_order}");
        let unknown = split("{\"Section\": \"Header\"}\n{\"Section\": \"Things\"}").unwrap_err();
        assert!(unknown.message.contains("unknown section"), "{unknown}");
        assert!(split("").is_err());
    }
}
