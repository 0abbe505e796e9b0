//! Chat templates: the Jinja template a model ships (`tokenizer.chat_template`)
//! turns a conversation into the prompt text the model was trained on.
//!
//! Templates are written for Hugging Face transformers, which renders them
//! with Python's Jinja2. minijinja renders them the same way given the same
//! settings: blocks trimmed (`trim_blocks`, `lstrip_blocks`), Python's string
//! and dict methods (`.strip()`, `.items()`... from minijinja-contrib's
//! pycompat), and the two functions transformers adds, `raise_exception` and
//! `strftime_now`.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::formats::gguf::GgufFile;
use crate::{HearthError, Result};

/// The name the template is stored under in its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// A chat template, compiled once, rendered for each conversation.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl ChatTemplate {
    /// Compiles a Jinja chat template.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        // transformers renders with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned()).map_err(template_error)?;
        Ok(ChatTemplate { env })
    }

    /// The template in `tokenizer.chat_template`; a model without one gives
    /// [`HearthError::NoChatTemplate`].
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let value = gguf.get("tokenizer.chat_template").ok_or(HearthError::NoChatTemplate)?;
        let source = value
            .as_str()
            .ok_or_else(|| HearthError::ChatTemplate("tokenizer.chat_template is not a string".into()))?;
        Self::new(source)
    }

    /// Renders `messages` as the prompt text. With `add_generation_prompt`
    /// the text ends with the opening of an assistant turn.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(template_error)?;
        template.render(context! { messages, add_generation_prompt, bos_token, eos_token }).map_err(template_error)
    }
}

fn template_error(e: Error) -> HearthError {
    HearthError::ChatTemplate(e.to_string())
}

/// `raise_exception(message)`: templates call it to refuse a conversation
/// (e.g. roles that do not alternate).
fn raise_exception(message: String) -> std::result::Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current date and time (UTC), formatted.
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    format_time(&format, unix_now())
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        (js_sys::Date::now() / 1000.0) as i64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Formats a UTC time with the C `strftime` directives templates use:
/// `%Y %y %m %d %H %M %S %B %b %A %a %%`.
fn format_time(format: &str, unix_seconds: i64) -> std::result::Result<String, Error> {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize]; // 1970-01-01 was a Thursday
    let month_name = MONTHS[month as usize - 1];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let field = match chars.next() {
            Some('Y') => year.to_string(),
            Some('y') => format!("{:02}", year.rem_euclid(100)),
            Some('m') => format!("{month:02}"),
            Some('d') => format!("{day:02}"),
            Some('H') => format!("{:02}", secs / 3600),
            Some('M') => format!("{:02}", secs / 60 % 60),
            Some('S') => format!("{:02}", secs % 60),
            Some('B') => month_name.to_string(),
            Some('b') => month_name[..3].to_string(),
            Some('A') => weekday.to_string(),
            Some('a') => weekday[..3].to_string(),
            Some('%') => "%".to_string(),
            other => {
                let directive = other.map_or("%".to_string(), |c| format!("%{c}"));
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: {directive:?} is not supported"),
                ));
            }
        };
        out.push_str(&field);
    }
    Ok(out)
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::Value;
    use std::collections::BTreeMap;

    fn gguf_with(metadata: &[(&str, Value)]) -> GgufFile {
        let metadata: BTreeMap<String, Value> = metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        GgufFile { version: 3, metadata, tensors: vec![], data_offset: 0, alignment: 32 }
    }

    #[test]
    fn chatml_with_default_system_prompt() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if loop.first and m.role != 'system' %}<s>sys\n{% endif %}\
             {{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}\
             {% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        )
        .unwrap();
        let messages = [Message::new("user", "Hi")];
        let text = t.render(&messages, true, "", "").unwrap();
        assert_eq!(text, "<s>sys\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        let text = t.render(&messages, false, "", "").unwrap();
        assert_eq!(text, "<s>sys\n<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn blocks_are_trimmed_as_in_transformers() {
        let t = ChatTemplate::new(
            "{{ bos_token }}\n  {% for m in messages %}\n[{{ m.content }}]\n  {% endfor %}\n{{ eos_token }}",
        )
        .unwrap();
        let messages = [Message::new("user", "a"), Message::new("assistant", "b")];
        assert_eq!(t.render(&messages, false, "<s>", "</s>").unwrap(), "<s>\n[a]\n[b]\n</s>");
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.role.startswith('us') }}|\
             {{ m.content.split(',')[-1] }};{% endfor %}",
        )
        .unwrap();
        let out = t.render(&[Message::new("user", "  x,y  ")], false, "", "").unwrap();
        assert_eq!(out, "X,Y|True|y  ;");
    }

    #[test]
    fn raise_exception_is_a_chat_template_error() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user') }}{% endif %}",
        )
        .unwrap();
        let err = t.render(&[Message::new("assistant", "x")], true, "", "").unwrap_err();
        assert!(matches!(&err, HearthError::ChatTemplate(m) if m.contains("must start with a user")), "{err}");
    }

    #[test]
    fn missing_or_broken_templates_are_typed_errors() {
        assert!(matches!(ChatTemplate::from_gguf(&gguf_with(&[])), Err(HearthError::NoChatTemplate)));
        let not_a_string = gguf_with(&[("tokenizer.chat_template", Value::U32(1))]);
        assert!(matches!(ChatTemplate::from_gguf(&not_a_string), Err(HearthError::ChatTemplate(_))));
        assert!(matches!(ChatTemplate::new("{% for %}"), Err(HearthError::ChatTemplate(_))));
        let ok = gguf_with(&[("tokenizer.chat_template", Value::String("{{ messages|length }}".into()))]);
        assert_eq!(ChatTemplate::from_gguf(&ok).unwrap().render(&[], false, "", "").unwrap(), "0");
    }

    #[test]
    fn strftime_formats_utc_dates() {
        assert_eq!(format_time("%d %b %Y", 0).unwrap(), "01 Jan 1970");
        // 2023-11-14 22:13:20 UTC, a Tuesday.
        assert_eq!(
            format_time("%A %B %d %y %H:%M:%S %a %m %%", 1_700_000_000).unwrap(),
            "Tuesday November 14 23 22:13:20 Tue 11 %"
        );
        // A leap day, and a date before 1970.
        assert_eq!(format_time("%Y-%m-%d", 951_782_400).unwrap(), "2000-02-29");
        assert_eq!(format_time("%Y-%m-%d", -86_400).unwrap(), "1969-12-31");
        assert!(format_time("%Q", 0).is_err());
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}").unwrap();
        assert_eq!(t.render(&[], false, "", "").unwrap().len(), 4);
    }
}
