//! Reading the TOML config and reporting what is wrong with it the way an operator reads it:
//! file, line, column, the route or plugin concerned, and the reason.

pub mod raw;
pub mod upstream;
pub mod warnings;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use raw::RawConfig;

/// A parsed config file, with its source kept for locating errors.
pub struct ConfigFile {
    /// The file's path as given.
    pub path: PathBuf,
    source: String,
    /// The parsed contents.
    pub raw: RawConfig,
}

impl ConfigFile {
    /// Reads and parses `path`. Cross-references are checked later, when the gateway builds
    /// its routes from it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            problems: vec![Problem::whole_file(format!("cannot read the file: {e}"))],
        })?;
        Self::parse(path, source)
    }

    /// Parses `source` as the contents of `path`.
    pub fn parse(path: &Path, source: String) -> Result<Self, ConfigError> {
        match toml::from_str::<RawConfig>(&source) {
            Ok(raw) => Ok(Self {
                path: path.to_owned(),
                source,
                raw,
            }),
            Err(e) => {
                let problem = match e.span() {
                    Some(span) => Problem::at(&source, span, e.message().to_string()),
                    None => Problem::whole_file(e.message().to_string()),
                };
                Err(ConfigError {
                    file: path.to_owned(),
                    problems: vec![problem],
                })
            }
        }
    }

    /// SHA-256 of the file's contents, hex.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.source.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The module files the config names (not built-ins), resolved against the file's
    /// directory: what a reload watcher must watch besides the file itself.
    pub fn module_paths(&self) -> Vec<PathBuf> {
        self.raw
            .plugins
            .values()
            .map(|p| p.get_ref().module.get_ref())
            .filter(|m| !m.starts_with("builtin:"))
            .map(|m| self.base_dir().join(m))
            .collect()
    }

    /// The files routes read into plugin configs (`config_files`), resolved against the
    /// file's directory: watched for changes like modules.
    pub fn config_file_paths(&self) -> Vec<PathBuf> {
        self.raw
            .routes
            .iter()
            .flat_map(|r| r.get_ref().plugins.iter())
            .filter_map(|p| p.get_ref().config_files.as_ref())
            .flat_map(|files| files.get_ref().values())
            .flat_map(|spec| expand_config_files(self.base_dir(), spec).unwrap_or_default())
            .collect()
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A problem located at `span` of this file.
    pub fn problem(&self, span: Range<usize>, message: impl Into<String>) -> Problem {
        Problem::at(&self.source, span, message.into())
    }

    /// Wraps problems found in this file into an error.
    pub fn error(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            problems,
        }
    }
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
    /// The offending line, for display under the message.
    pub excerpt: Option<String>,
}

impl Problem {
    fn at(source: &str, span: Range<usize>, message: String) -> Self {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        Self {
            position: Some((line, column)),
            message,
            excerpt: Some(source[line_start..line_end].trim_end().to_string()),
        }
    }

    /// A problem that concerns the file as a whole.
    pub fn whole_file(message: String) -> Self {
        Self {
            position: None,
            message,
            excerpt: None,
        }
    }
}

/// Everything wrong with one config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Its problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    /// One block per problem:
    ///
    /// ```text
    /// gateway.toml:12:11: route `users`: unknown upstream `userz` (defined: billing, users)
    ///    |   upstream = "userz"
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.position {
                Some((line, col)) => write!(
                    f,
                    "{}:{line}:{col}: {}",
                    self.file.display(),
                    problem.message
                )?,
                None => write!(f, "{}: {}", self.file.display(), problem.message)?,
            }
            if let Some(excerpt) = &problem.excerpt {
                write!(f, "\n   | {excerpt}")?;
            }
        }
        Ok(())
    }
}

/// The files a `config_files` entry names, resolved against `base`: each path as given, each
/// glob pattern's matches sorted by name. A pattern that matches nothing is an error (a typo
/// must not load an empty rule set).
pub fn expand_config_files(base: &Path, spec: &raw::ConfigFiles) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for pattern in spec.patterns() {
        let full = base.join(pattern);
        if !pattern.contains(['*', '?', '[']) {
            out.push(full);
            continue;
        }
        let text = full.to_string_lossy();
        let matches = glob::glob(&text).map_err(|e| format!("bad pattern `{pattern}`: {e}"))?;
        let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
        if found.is_empty() {
            return Err(format!("`{pattern}` matches no file"));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_error_points_at_line_and_column() {
        let src = "[listeners.main]\naddr = \"127.0.0.1:8080\"\n[[routes]]\nname = 5\n".to_string();
        let err = ConfigFile::parse(Path::new("gw.toml"), src).err().unwrap();
        let text = err.to_string();
        assert!(
            text.starts_with("gw.toml:4:8: invalid type: integer `5`, expected a string"),
            "{text}"
        );
        assert!(text.ends_with("   | name = 5"), "{text}");
    }

    #[test]
    fn unknown_key_is_named() {
        let src = "[listeners.main]\naddr = \"127.0.0.1:8080\"\nport = 1\n".to_string();
        let err = ConfigFile::parse(Path::new("gw.toml"), src).err().unwrap();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "gw.toml:3:1: unknown field `port`, expected one of `addr`, `tls`, `internal`"
            ),
            "{text}"
        );
    }
}
