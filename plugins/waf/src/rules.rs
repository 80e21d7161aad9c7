//! The built-in rule set: OWASP-style detection of SQL injection, cross-site scripting, path
//! traversal and local file inclusion, remote command execution, and Log4Shell/template
//! injection, written for wasmgate.
//!
//! Patterns run on normalised values (see `normalize`): lower case, decoded, whitespace
//! collapsed, backslashes read as slashes. Ids follow the Core Rule Set's numbering by
//! category (930 LFI, 932 RCE, 941 XSS, 942 SQLi, 944 Java/template) so operators can map
//! them; the rules themselves are our own. Paranoia 1 holds rules with a very low false-positive
//! rate on API traffic; higher levels add broader patterns.

/// Where a rule looks.
pub mod target {
    /// The request path.
    pub const PATH: u8 = 1;
    /// Query parameter values.
    pub const ARGS: u8 = 1 << 1;
    /// Query parameter names and JSON object keys.
    pub const NAMES: u8 = 1 << 2;
    /// Header values (except those the WAF never inspects, see `request`).
    pub const HEADERS: u8 = 1 << 3;
    /// Cookie values.
    pub const COOKIES: u8 = 1 << 4;
    /// Body values: form fields, JSON strings, or the whole body for other types.
    pub const BODY: u8 = 1 << 5;
    /// Everything.
    pub const ALL: u8 = PATH | ARGS | NAMES | HEADERS | COOKIES | BODY;
    /// Everything a client fills with data (not the path).
    pub const DATA: u8 = ARGS | NAMES | HEADERS | COOKIES | BODY;
}

/// Attack categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
    /// Path traversal and local file inclusion.
    Lfi,
    /// Remote command execution.
    Rce,
    /// Protocol anomalies.
    Protocol,
    /// User-defined rules.
    Custom,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Sqli => "sqli",
            Category::Xss => "xss",
            Category::Lfi => "lfi",
            Category::Rce => "rce",
            Category::Protocol => "protocol",
            Category::Custom => "custom",
        }
    }
}

/// Anomaly score of a match, as in the Core Rule Set.
pub const CRITICAL: u32 = 5;
pub const ERROR: u32 = 4;
pub const WARNING: u32 = 3;
pub const NOTICE: u32 = 2;

/// One built-in pattern rule.
pub struct RuleDef {
    pub id: u32,
    pub category: Category,
    pub paranoia: u8,
    pub score: u32,
    pub targets: u8,
    pub message: &'static str,
    pub pattern: &'static str,
}

use Category::*;
use target::{ALL, DATA};

/// Unix and Windows commands that are unambiguous in a request value.
const STRONG_COMMANDS: &str = r"(?:whoami|uname|wget|curl|netcat|ncat|nslookup|chmod|chown|chgrp|ifconfig|netstat|telnet|nohup|busybox|sudo|crontab|useradd|usermod|killall|pkill|xterm|socat|mkfifo|powershell|pwsh|certutil|bitsadmin|mshta|rundll32|regsvr32|wmic|ipconfig|systeminfo|tasklist|schtasks|cscript|wscript|printenv|uptime|getent)";

/// Everyday words that are also commands: only suspicious with shell-looking arguments.
const WEAK_COMMANDS: &str = r"(?:printf|cat|id|ls|env|ps|pwd|ping|dig|sh|bash|zsh|ksh|dash|python[23]?|perl|ruby|php|node|lua|ssh|scp|ftp|tftp|base64|nc|passwd|reg|net|cmd|hostname|echo|head|tail|more|less|awk|sed|grep|find|xargs|tar|rm|mv|cp|touch|kill|sleep|timeout|type|dir|file|time|who|last|host|ip|su|sort|cut|nl|od|strings|tac|rev|diff|nmap)";

pub fn builtin_rules() -> Vec<RuleDef> {
    let strong = STRONG_COMMANDS;
    let weak = WEAK_COMMANDS;
    let shell_arg = r#"(?:\s+\d+\s*(?:[;|&`]|$)|\s+(?:-{1,2}[a-z]|/|\.\.?/|~|\$|'|"|<|>|;|`|[a-z0-9._-]+[|&`]|[a-z0-9._-]+/)|\s*$|[|&`)<>])"#;
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        // ---- SQL injection (942) ----
        RuleDef {
            id: 942100,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL tautology after a quote",
            pattern: r#"['"`]\s*\)*\s*(?:\b(?:or|and|xor)\b|\|\||&&)\s*\(*\s*(?:(?:['"`]\w*['"`]|\w+)\s*(?:=|<>|!=|<=?|>=?|\blike\s+['"`\d]|\bis\s+(?:not\s+)?null\b|\bregexp\s+['"`])|(?:not\s+)?(?:true|false|null|\d+)\s*(?:$|--|#|/\*|;|\)))"#,
        },
        RuleDef {
            id: 942101,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL numeric tautology",
            pattern: r"(?:^|[\s('])(?:or|and|xor|\|\||&&)\s+\(*\s*(\d+|true|false)\s*\)*\s*(?:=|<>|!=|<|>|\blike\b)\s*\(*\s*(\d+|true|false)\b",
        },
        RuleDef {
            id: 942110,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL UNION SELECT",
            pattern: r"(?:\b|\d)union\b(?:\s+(?:all|distinct))?\s*\(*\s*select\b",
        },
        RuleDef {
            id: 942120,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "stacked SQL statement",
            pattern: r#"(?:[;'"`)]|\b\d+)\s*;?\s*(?:drop\s+(?:table|database|schema|view|user|procedure|function)\b|truncate\s+table\b|delete\s+from\s+\w|insert\s+into\s+\w|update\s+[\w.`"\[\]]+\s+set\s+\w|alter\s+(?:table|user|database)\b|create\s+(?:table|user|database|function|procedure|trigger)\b|exec(?:ute)?\s*(?:\(|@|xp_|sp_|master\.|immediate\b)|declare\s+@|shutdown\b|grant\s+\w+\s+on\b|rename\s+table\b)"#,
        },
        RuleDef {
            id: 942130,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL time-based probe",
            pattern: r#"(?:(?:\b(?:and|or|xor|select|if|then|else|when|case|union)\b|['"`(,;|&=*+-])\s*\(*\s*(?:sleep|benchmark|pg_sleep|sys\.dbms_lock\.sleep|dbms_lock\.sleep)\s*\(|\bwaitfor\s+(?:delay|time)\s+['"]|\bdbms_pipe\.receive_message\s*\(|\brandomblob\s*\(\s*\d{6,})"#,
        },
        RuleDef {
            id: 942140,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL system catalog access",
            pattern: r"\binformation_schema\b|\bsysobjects\b|\bsyscolumns\b|\bsys\.(?:tables|columns|databases|objects|sql_logins)\b|\bmysql\.(?:user|db)\b|\bpg_(?:catalog|shadow|user|database|tables)\b|\bsqlite_(?:master|schema)\b|@@(?:version|datadir|hostname|basedir|servername)\b|\ball_tables\b|\buser_tables\b|\bmsysobjects\b",
        },
        RuleDef {
            id: 942150,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL error-based or file function",
            pattern: r#"\b(?:extractvalue|updatexml|name_const|load_file|utl_inaddr\.get_host_\w+|utl_http\.request|ctxsys\.drithsx\.sn|xp_dirtree|xp_fileexist|dbms_xmlgen\.getxml|json_keys|gtid_subset)\s*\(|\binto\s+(?:out|dump)file\s+['"]|\bexp\s*\(\s*~|\bfloor\s*\(\s*rand\s*\(\s*\d*\s*\)\s*\*\s*\d"#,
        },
        RuleDef {
            id: 942160,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL comment after a quote",
            pattern: r#"['"`]\s*\)*\s*;?\s*(?:--(?:\s|$)|#\s*$|/\*)"#,
        },
        RuleDef {
            id: 942170,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL subquery injection",
            pattern: r"\b(?:and|or|xor|&&|\|\|)\s+\(*\s*select\s|\(\s*select\s+(?:\*|\w+\s*\(|[\w.@]+\s+from\b|[\w.@]+\s*,\s*[\w.@]+)|\b(?:ascii|ord|substring|substr|mid|length|hex)\s*\(\s*\(?\s*select\b|\bgroup_concat\s*\(|\bconcat(?:_ws)?\s*\([^)]*0x[0-9a-f]{2}|\bchar\s*\(\s*\d+\s*(?:,\s*\d+\s*)+\)",
        },
        RuleDef {
            id: 942190,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL Server command execution",
            pattern: r"\bxp_cmdshell\b|\bexec(?:ute)?\s+(?:master\.|xp_|sp_)|\bsp_(?:oacreate|oamethod|executesql|configure|makewebtask|addlogin|password)\b|\bopen(?:rowset|datasource|query)\s*\(",
        },
        RuleDef {
            id: 942200,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL ORDER/GROUP BY probe",
            pattern: r#"(?:['"`)]|\d)\s*\b(?:order|group)\s+by\s+\d+\s*(?:--|#|/\*|;|$|,\s*\d|desc|asc)|\bhaving\s+\d+\s*=\s*\d+|['"`)]\s*(?:order|group)\s+by\s+(?:\d|[\w.]+\s*(?:--|#|/\*|,|\basc\b|\bdesc\b|\)))"#,
        },
        RuleDef {
            id: 942210,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL keyword after a quote",
            pattern: r#"['"`]\s*\)*\s*(?:;|\|\||&&)?\s*(?:union\s+(?:all\s+|distinct\s+)?\(?\s*select\b|select\s+(?:[\w*@(),.'"]+\s+from\b|\d|null\b|@@|\*|concat|char\s*\(|if\s*\()|insert\s+into\b|update\s+[\w.`"]+\s+set\b|delete\s+from\b|drop\s+(?:table|database)\b|exec(?:ute)?\s*(?:\(|@|xp_|sp_|master\.)|having\s+\d|where\s+(?:\d|[\w.]+\s*(?:=|<|>|like\b))|limit\s+\d|procedure\s+analyse)"#,
        },
        RuleDef {
            id: 942220,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL boolean probe after a quote",
            pattern: r#"['"`]\s*\)*\s*(?:and|or|xor|&&|\|\|)\s+(?:not\s+)?(?:\(\s*(?:select|\d|['"]|sleep|ascii|substr|case|if)\b|@@?\w|true\b|false\b|null\b|select\b|sleep\s*\(|exists\s*\(|substr|ascii\s*\(|char\s*\(|if\s*\(|case\s+when\b|\d+\s*(?:$|--|#|;|\)))"#,
        },
        RuleDef {
            id: 942230,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL hex or charset-prefixed literal in a comparison",
            pattern: r"(?:=|\blike\b)\s*(?:0x[0-9a-f]{6,}|_(?:utf8|latin1|binary)\w*\s*['0x])",
        },
        RuleDef {
            id: 942240,
            category: Sqli,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "SQL CASE WHEN condition",
            pattern: r#"\bcase\s+when\s*\(*\s*(?:[\w'"]+\s*(?:=|<>|!=|<|>)|\d|select\b|exists\b)"#,
        },
        RuleDef {
            id: 942300,
            category: Sqli,
            paranoia: 2,
            score: CRITICAL,
            targets: ALL,
            message: "SQL statement",
            pattern: r#"\bselect\b[\s\w*,()'"`.@]{1,120}?\bfrom\b\s*[\w.`"\[\]]+|\binsert\s+into\b|\bdelete\s+from\b|\bupdate\s+[\w.`"]+\s+set\b|\bdrop\s+(?:table|database)\b"#,
        },
        RuleDef {
            id: 942310,
            category: Sqli,
            paranoia: 2,
            score: CRITICAL,
            targets: ALL,
            message: "SQL function call",
            pattern: r"(?:^|[^.\w])(?:char|chr|ascii|substring|substr|concat|concat_ws|cast|convert|version|database|user|schema|current_user|system_user|md5|sha1|benchmark|sleep|if|ifnull|coalesce)\s*\(",
        },
        RuleDef {
            id: 942320,
            category: Sqli,
            paranoia: 2,
            score: WARNING,
            targets: ALL,
            message: "quote followed by an SQL operator",
            pattern: r#"['"`]\s*(?:or|and|xor|union|select|where|like)\b"#,
        },
        RuleDef {
            id: 942400,
            category: Sqli,
            paranoia: 3,
            score: WARNING,
            targets: ALL,
            message: "SQL comment sequence",
            pattern: r"--\s*$|/\*!?|\*/|;\s*--",
        },
        // ---- Protocol (920) ----
        RuleDef {
            id: 920115,
            category: Protocol,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "response header injection",
            pattern: r"\n\s*(?:set-cookie\s*:|location\s*:\s*(?:[a-z]+:)?//|content-(?:length|type)\s*:|refresh\s*:\s*\d|access-control-allow-[a-z-]+\s*:|x-xss-protection\s*:)",
        },
        // ---- XSS (941) ----
        RuleDef {
            id: 941100,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "script tag",
            pattern: r"<\s*/?\s*script\b",
        },
        RuleDef {
            id: 941110,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "event handler attribute",
            pattern: r#"<[a-z!/?][^>]*?[\s/"'`]on[a-z]{3,}\s*=|['"`]\s*/?\s*on[a-z]{3,}\s*=\s*['"`]?[\w$.(]|^\s*on(?:error|load|click|mouseover|focus|blur|submit|toggle|begin|start|animationstart)\s*=\s*\S"#,
        },
        RuleDef {
            id: 941120,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "javascript: or vbscript: URL",
            pattern: r"\b(?:java|vb|live)\s*script\s*:\s*(?:[a-z_$][\w$.]*\s*[(\[=`]|//|/\*|void\b|\S+\()|^\s*(?:java|vb)script\s*:\S",
        },
        RuleDef {
            id: 941130,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "dangerous HTML element",
            pattern: r"<\s*(?:iframe|frame|frameset|object|embed|applet|svg|math|base|meta|isindex|xss)\b|<\s*(?:img|image|input|video|audio|source|body|style|link|form|button|a|div|details|marquee|select|textarea|keygen|table|td|iframe)\b[^>]*\b(?:src|href|action|formaction|data|background|lowsrc|dynsrc)\s*=\s*['`]?\s*(?:javascript|vbscript|data)\s*:",
        },
        RuleDef {
            id: 941140,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "script-bearing data: URI",
            pattern: r"\bdata\s*:\s*(?:text/html|text/javascript|application/(?:x-)?javascript|image/svg\+xml|application/xhtml\+xml|text/xml)\b",
        },
        RuleDef {
            id: 941150,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "DOM access used by XSS payloads",
            pattern: r"\bdocument\s*\.\s*(?:cookie|domain|write(?:ln)?\s*\()|\bwindow\s*\.\s*location\s*=|\.innerhtml\s*=|\bstring\s*\.\s*fromcharcode\s*\(|\beval\s*\(\s*(?:atob|unescape|string|location|name|decodeuri)|\bexpression\s*\(|-moz-binding\s*:|\bsrcdoc\s*=|\bfetch\s*\(\s*['`]?(?:https?:)?//[^)]*\bcookie|\blocation\s*\.\s*href\s*=\s*['`]?\s*(?:javascript|https?://)[^'`]*\+",
        },
        RuleDef {
            id: 941160,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "attribute or tag breakout",
            pattern: r#"['"`]\s*>\s*<\s*(?:script|img|svg|iframe|body|a|input|details|video|audio|marquee|object|embed|style|math)\b|</\s*(?:title|textarea|style|noscript|template|xmp|iframe)\s*>\s*<"#,
        },
        RuleDef {
            id: 941170,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "UTF-7 encoded markup",
            pattern: r"\+ad[w4]-|\+ad4app",
        },
        RuleDef {
            id: 941180,
            category: Xss,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "script function call with a payload",
            pattern: r"\b(?:alert|prompt|confirm|eval|settimeout|setinterval)\s*(?:\(|`)\s*(?:document|window|\d|['`]xss|/xss/|1\)|string\.|atob|this|self|top|parent|location)|\b(?:alert|prompt|confirm)\s*`",
        },
        RuleDef {
            id: 941300,
            category: Xss,
            paranoia: 2,
            score: CRITICAL,
            targets: ALL,
            message: "HTML tag with attributes",
            pattern: r"<\s*[a-z][a-z0-9-]*\b[^>]*\b(?:on\w+|style|src|href)\s*=|\b(?:alert|prompt|confirm|eval)\s*\(",
        },
        RuleDef {
            id: 941310,
            category: Xss,
            paranoia: 3,
            score: WARNING,
            targets: ALL,
            message: "HTML tag",
            pattern: r"<\s*/?\s*[a-z][a-z0-9-]*[\s/>]",
        },
        // ---- LFI / path traversal (930) ----
        RuleDef {
            id: 930100,
            category: Lfi,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "path traversal",
            pattern: r"(?:^|[/=\s:;'\x22])\.{2,}/|/\.{2,}$|^\.\.$",
        },
        RuleDef {
            id: 930110,
            category: Lfi,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "sensitive system file",
            pattern: r"(?:^|[/=\s'\x22:;])(?:etc/(?:passwd|shadow|group|hosts|issue|crontab|sudoers|hostname|resolv\.conf|motd|fstab|mtab|inittab|security/|ssh/|nginx/|apache2?/|httpd/|mysql/)|proc/(?:self|\d+|version|cpuinfo|meminfo|net/)|sys/(?:class|kernel|devices)/|windows/(?:win\.ini|system\.ini|system32|repair|debug|panther)|winnt/|boot\.ini|win\.ini|inetpub/|\.htaccess|\.htpasswd|\.ssh/(?:id_|authorized_keys|known_hosts)|id_rsa\b|id_dsa\b|\.aws/credentials|\.bash_history|\.bashrc|\.docker/config|var/log/(?:apache|nginx|httpd|auth|syslog|messages)|web\.config\b|wp-config\.php|applicationhost\.config|/?etc/(?:passwd|shadow)\b)",
        },
        RuleDef {
            id: 930120,
            category: Lfi,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "file or code stream wrapper",
            pattern: r"\b(?:php|zip|phar|expect|glob|file|jar|gopher|dict|ldap|netdoc|zlib|compress\.zlib|compress\.bzip2|ogg|rar|ssh2\.\w+)://|\bdata://|\bphp://(?:filter|input|fd|memory|temp|stdin)",
        },
        RuleDef {
            id: 930130,
            category: Lfi,
            paranoia: 1,
            score: CRITICAL,
            targets: DATA,
            message: "absolute path to a system directory",
            pattern: r"^\s*(?:/+(?:etc|proc|sys|dev|root|boot|var/log|var/run|usr/local/etc|home/[^/]+/\.)\b|[a-z]:/+(?:windows|winnt|boot\.ini|inetpub|program\s?files)|//+[\w.$-]+/+(?:c\$|admin\$|ipc\$))",
        },
        RuleDef {
            id: 930200,
            category: Lfi,
            paranoia: 2,
            score: CRITICAL,
            targets: ALL,
            message: "dot file or repository metadata",
            pattern: r"(?:^|/)\.(?:env|git|svn|hg|bzr|ds_store|idea|vscode|npmrc|pgpass|my\.cnf|netrc|kube)(?:/|$|\b)",
        },
        // ---- RCE (932) ----
        RuleDef {
            id: 932100,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "shell command after a separator",
            pattern: leak(format!(
                r"(?:[;|&`\n]|\$\(|\|\||&&)\s*(?:[a-z_]+=\S*\s+)*(?:/(?:usr/)?(?:local/)?s?bin/)?{strong}(?:\.exe)?\b(?:\s|$|[;|&`)<>'\x22]|/)"
            )),
        },
        RuleDef {
            id: 932105,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "shell command with shell arguments after a separator",
            // Not after a backtick: Markdown code spans (`echo $?`) are everyday text.
            pattern: leak(format!(
                r"(?:[;|&\n]|\$\(|\|\||&&)\s*(?:/(?:usr/)?s?bin/)?{weak}\b{shell_arg}"
            )),
        },
        RuleDef {
            id: 932110,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "command substitution",
            pattern: leak(format!(
                r"\$\(\s*(?:{strong}|{weak})\b|`\s*(?:{strong})\b[^`]*`|\$\{{\s*(?:ifs|path:|shell|home)\b|\$ifs\b|\{{\s*(?:{strong}|{weak})\s*,"
            )),
        },
        RuleDef {
            id: 932120,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "reverse shell or interpreter one-liner",
            pattern: r"/dev/(?:tcp|udp)/|\bnc(?:at)?\s+(?:-\w*\s+)*-\w*[ec]\b|\b(?:ba|z|k)?sh\s+-i\b|\bmkfifo\b|\bsocat\b[^\n]*\bexec\b|\bpython[23]?\s+-c\s|\bperl\s+-e\s|\bphp\s+-r\s|\bruby\s+-e\s|\bnode\s+-e\s|\blua\s+-e\s|\bawk\s+'?\s*begin\s*\{|\btelnet\s+[\w.]+\s+\d+\s*\|",
        },
        RuleDef {
            id: 932130,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "Windows command execution",
            pattern: r"\bcmd(?:\.exe)?\s*/[ckr]\b|\bpowershell(?:\.exe)?\b[^\n]*?(?:\s-e(?:nc|ncodedcommand|c)?\s|\s-c(?:ommand)?\s|\biex\b|invoke-expression|invoke-webrequest|downloadstring|downloadfile|\s-nop\b|\s-w(?:indowstyle)?\s+hidden|new-object)|\b(?:certutil|bitsadmin|mshta|rundll32|regsvr32|wmic|cscript|wscript)(?:\.exe)?\s+\S|\bstart-process\b|\bnet\s+(?:user|localgroup)\s",
        },
        RuleDef {
            id: 932140,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "path to a system binary",
            pattern: r"(?:^|[\s;|&'\x22(=`$])/(?:usr/)?(?:local/)?s?bin/(?:[a-z]+)\b",
        },
        RuleDef {
            id: 932150,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "download-and-run",
            pattern: r"\b(?:wget|curl|fetch|lwp-download|tftp)\b[^\n]{0,100}?(?:\|\s*(?:ba|z)?sh\b|;\s*(?:ba|z)?sh\b|-o\s*/tmp/|-o\s*-\s*\||\s-qo-|&&\s*chmod\b|>\s*/tmp/)",
        },
        RuleDef {
            id: 932160,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "shell wildcard path",
            pattern: r"/\?+[a-z?]*/|/[a-z]*\?\?[a-z?]*/[a-z?]*\?",
        },
        RuleDef {
            id: 932200,
            category: Rce,
            paranoia: 2,
            score: CRITICAL,
            targets: ALL,
            message: "shell command after a separator (broad)",
            pattern: leak(format!(r"(?:[;|&`]|\$\()\s*{weak}\b")),
        },
        RuleDef {
            id: 932210,
            category: Rce,
            paranoia: 3,
            score: WARNING,
            targets: ALL,
            message: "shell metacharacter sequence",
            pattern: r"[;|&]\s*[a-z]{2,}\s+-|\$\(|`[^`]+`|\|\s*[a-z]{2,}\b",
        },
        // ---- Java, template and expression injection (944) ----
        RuleDef {
            id: 944100,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "JNDI lookup (Log4Shell)",
            pattern: r"\$\{[^}]{0,40}(?:jndi|\$\{|lower:|upper:|env:|sys:|java:|::-)",
        },
        RuleDef {
            id: 944110,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "server-side template or expression injection",
            pattern: r"\{\{[^}]{0,80}(?:__class__|__globals__|__builtins__|__subclasses__|__mro__|__import__|config\.items|self\._|lipsum|cycler|joiner|request\.application|popen)|\$\{[^}]{0,80}(?:runtime|processbuilder|getclass|forname|\.exec\()|#\{[^}]{0,80}(?:runtime|exec|system)|<%=?\s*(?:system|exec|`|runtime)|\bjava\.lang\.(?:runtime|processbuilder)\b|\bclass\.module\.classloader\b",
        },
        RuleDef {
            id: 944120,
            category: Rce,
            paranoia: 1,
            score: CRITICAL,
            targets: ALL,
            message: "code evaluation function",
            pattern: r"\b(?:system|passthru|shell_exec|exec|popen|proc_open|pcntl_exec|assert|create_function|call_user_func|preg_replace)\s*\(\s*['\x22$]|\b(?:os\.system|os\.popen|subprocess\.(?:call|popen|run|check_output)|child_process|require\s*\(\s*['\x22]child_process|__import__\s*\(\s*['\x22]os)\b",
        },
    ]
}
