//! Byte-level JSON helpers shared by the codec and the watch cache: fast scans for string
//! delimiters, Go-style character quoting for error messages.

/// Word-at-a-time scans (SWAR): test eight bytes per step for the bytes that end a plain run
/// inside a JSON string. The flagged lowest byte is always a true hit (the usual
/// has-zero-byte trick only yields false positives above a true one), which is all we use.
pub mod swar {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// Sixteen bytes at a time with SSE2 (always present on x86-64); elsewhere two SWAR words.
    pub mod simd {
        /// Bit i set when byte i is `"`, `\\`, a control byte, or (if `high`) >= 0x80.
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        pub fn specials(v: &[u8; 16], high: bool) -> u32 {
            use std::arch::x86_64::*;
            // SAFETY: SSE2 is part of the x86-64 baseline; the load is unaligned-safe and
            // reads exactly the 16 bytes of `v`.
            unsafe {
                let x = _mm_loadu_si128(v.as_ptr() as *const __m128i);
                let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
                let slash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
                // Signed compare: bytes >= 0x80 are negative, so they count as "< 0x20" too.
                let mut low = _mm_cmplt_epi8(x, _mm_set1_epi8(0x20));
                if !high {
                    low = _mm_andnot_si128(_mm_cmplt_epi8(x, _mm_setzero_si128()), low);
                }
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), low)) as u32
            }
        }

        #[cfg(not(target_arch = "x86_64"))]
        #[inline(always)]
        pub fn specials(v: &[u8; 16], high: bool) -> u32 {
            let mut m = 0;
            for (i, &b) in v.iter().enumerate() {
                if b == b'"' || b == b'\\' || b < 0x20 || (high && b >= 0x80) {
                    m |= 1 << i;
                }
            }
            m
        }
    }

    #[inline(always)]
    fn load(s: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"))
    }

    #[inline(always)]
    fn has_byte(v: u64, b: u8) -> u64 {
        let x = v ^ (LO * b as u64);
        x.wrapping_sub(LO) & !x & HI
    }

    /// Bytes below `n` (n <= 128); bytes >= 0x80 never count.
    #[inline(always)]
    fn has_less(v: u64, n: u8) -> u64 {
        v.wrapping_sub(LO * n as u64) & !v & HI
    }

    #[inline(always)]
    fn scan(
        s: &[u8],
        mut i: usize,
        wide: impl Fn(&[u8; 16]) -> u32,
        mask: impl Fn(u64) -> u64,
        hit: impl Fn(u8) -> bool,
    ) -> usize {
        while i + 16 <= s.len() {
            let m = wide(s[i..i + 16].try_into().expect("16 bytes"));
            if m != 0 {
                return i + m.trailing_zeros() as usize;
            }
            i += 16;
        }
        while i + 8 <= s.len() {
            let m = mask(load(s, i));
            if m != 0 {
                return i + (m.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while i < s.len() && !hit(s[i]) {
            i += 1;
        }
        i
    }

    /// Flags (high bit of each byte) the bytes of `v` that JSON output must escape.
    #[inline(always)]
    pub fn escape_mask(v: u64) -> u64 {
        has_less(v, 0x20) | has_byte(v, b'"') | has_byte(v, b'\\')
    }

    /// 1 to 7 bytes as a little-endian word, the missing high bytes set to ' '.
    #[inline(always)]
    pub fn tail_word(t: &[u8]) -> u64 {
        let n = t.len();
        debug_assert!((1..8).contains(&n));
        let word = if n >= 4 {
            let lo = u32::from_le_bytes(t[..4].try_into().expect("4 bytes")) as u64;
            let hi = u32::from_le_bytes(t[n - 4..].try_into().expect("4 bytes")) as u64;
            lo | (hi << (8 * (n - 4)))
        } else if n >= 2 {
            let lo = u16::from_le_bytes(t[..2].try_into().expect("2 bytes")) as u64;
            let hi = u16::from_le_bytes(t[n - 2..].try_into().expect("2 bytes")) as u64;
            lo | (hi << (8 * (n - 2)))
        } else {
            t[0] as u64
        };
        word | (0x2020_2020_2020_2020u64 << (8 * n))
    }

    /// First byte at or after `i` that JSON output must escape: `"`, `\` or a control byte.
    /// `s` is ASCII. Returns `s.len()` if none.
    #[inline]
    pub fn find_escape(s: &[u8], i: usize) -> usize {
        scan(
            s,
            i,
            |v| simd::specials(v, false),
            |v| has_less(v, 0x20) | has_byte(v, b'"') | has_byte(v, b'\\'),
            |b| b < 0x20 || b == b'"' || b == b'\\',
        )
    }

    /// First `"`, `\`, control or non-ASCII byte at or after `i` (or `s.len()`).
    #[inline]
    pub fn find_string_special(s: &[u8], i: usize) -> usize {
        scan(
            s,
            i,
            |v| simd::specials(v, true),
            |v| has_less(v, 0x20) | has_byte(v, b'"') | has_byte(v, b'\\') | (v & HI),
            |b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x80,
        )
    }

    /// First `"`, `\` or control byte at or after `i` (or `s.len()`).
    #[inline]
    pub fn find_quote_or_escape(s: &[u8], i: usize) -> usize {
        find_escape(s, i)
    }
}

/// The character at `data[at]` quoted the way Go's encoding/json names it in errors
/// (`'x'`, `'\n'`, `'\x01'`), so our messages read like upstream's.
pub fn quote_char(data: &[u8], at: usize) -> String {
    let tail = &data[at..data.len().min(at + 4)];
    let ch = match std::str::from_utf8(tail) {
        Ok(s) => s.chars().next(),
        Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&tail[..e.valid_up_to()])
            .ok()
            .and_then(|s| s.chars().next()),
        Err(_) => None,
    };
    match ch {
        Some('\'') => "'\\''".to_string(),
        Some('"') => "'\"'".to_string(),
        Some('\\') => "'\\\\'".to_string(),
        Some('\n') => "'\\n'".to_string(),
        Some('\r') => "'\\r'".to_string(),
        Some('\t') => "'\\t'".to_string(),
        Some(c) if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
        Some(c) => format!("'{c}'"),
        None => format!("'\\x{:02x}'", data[at]),
    }
}

// ------------------------------------------------------------------ attribute extraction

/// What the watch cache keeps from an object besides its bytes: labels (sorted by key) and
/// the string value of each configured field path.
#[derive(Debug, Default)]
pub struct Extracted {
    pub labels: Vec<(String, String)>,
    pub fields: Vec<String>,
}

/// The dotted paths to read, merged into a tree so one pass over the object reads them all.
#[derive(Debug, Default)]
pub struct PathTree {
    children: Vec<(String, PathTree)>,
    /// Index of the field path that ends here.
    field: Option<usize>,
    /// metadata.labels ends here.
    labels: bool,
}

impl PathTree {
    pub fn new(paths: &[String]) -> PathTree {
        let mut root = PathTree::default();
        for (i, path) in paths.iter().enumerate() {
            root.node(path).field = Some(i);
        }
        root.node("metadata.labels").labels = true;
        root
    }

    fn node(&mut self, path: &str) -> &mut PathTree {
        let mut node = self;
        for part in path.split('.') {
            let at = match node.children.iter().position(|(k, _)| k == part) {
                Some(at) => at,
                None => {
                    node.children.push((part.to_string(), PathTree::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at].1;
        }
        node
    }

    fn child(&self, key: &str) -> Option<&PathTree> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }
}

/// Reads labels and fields from a JSON object. Scalars are stringified as a field selector
/// sees them (`true`, `false`, the number's text); null, objects, arrays and missing
/// fields read as "".
pub fn extract(data: &[u8], tree: &PathTree, nfields: usize) -> Result<Extracted, String> {
    let mut out = Extracted {
        labels: Vec::new(),
        fields: vec![String::new(); nfields],
    };
    let mut sc = Scanner { d: data, pos: 0 };
    sc.ws();
    if sc.peek() != Some(b'{') {
        return Err(sc.error("an object"));
    }
    sc.walk_object(tree, &mut out, 0)?;
    sc.ws();
    if sc.pos != data.len() {
        return Err(sc.error("end of input"));
    }
    out.labels.sort();
    Ok(out)
}

/// Byte range of the value at `path` (e.g. metadata.resourceVersion), and the position just
/// inside the `{` of its parent object, so the value can be replaced or inserted.
pub fn locate(data: &[u8], path: &[&str]) -> Result<Location, String> {
    let mut sc = Scanner { d: data, pos: 0 };
    sc.ws();
    let mut parent_open = None;
    for (depth, part) in path.iter().enumerate() {
        if sc.peek() != Some(b'{') {
            return Ok(Location {
                parent_open,
                value: None,
            });
        }
        sc.pos += 1;
        parent_open = Some((sc.pos, depth));
        let mut found = false;
        sc.ws();
        if sc.peek() == Some(b'}') {
            return Ok(Location {
                parent_open: Some((sc.pos, depth)),
                value: None,
            });
        }
        loop {
            sc.ws();
            let key = sc.string()?;
            sc.ws();
            sc.expect(b':')?;
            sc.ws();
            if key == *part {
                found = true;
                break;
            }
            sc.skip(0)?;
            sc.ws();
            match sc.peek() {
                Some(b',') => sc.pos += 1,
                Some(b'}') => break,
                _ => return Err(sc.error("',' or '}'")),
            }
        }
        if !found {
            return Ok(Location {
                parent_open,
                value: None,
            });
        }
    }
    let start = sc.pos;
    sc.skip(0)?;
    Ok(Location {
        parent_open,
        value: Some((start, sc.pos)),
    })
}

pub struct Location {
    /// Just after the `{` of the innermost object reached, and its depth in the path.
    pub parent_open: Option<(usize, usize)>,
    /// The value's byte range when the whole path exists.
    pub value: Option<(usize, usize)>,
}

const MAX_SCAN_DEPTH: u32 = 1000;

struct Scanner<'a> {
    d: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn error(&self, expected: &str) -> String {
        format!(
            "malformed JSON object: expected {expected} at byte {}",
            self.pos
        )
    }

    fn peek(&self) -> Option<u8> {
        self.d.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() != Some(c) {
            return Err(self.error(&format!("'{}'", c as char)));
        }
        self.pos += 1;
        Ok(())
    }

    /// A JSON string, unescaped (lone surrogates become U+FFFD).
    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = swar::find_escape(self.d, start);
        if end < self.d.len() && self.d[end] == b'"' {
            self.pos = end + 1;
            return std::str::from_utf8(&self.d[start..end])
                .map(str::to_string)
                .map_err(|_| self.error("UTF-8"));
        }
        let mut units: Vec<u16> = Vec::new();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("'\"'")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let c = *self
                        .d
                        .get(self.pos + 1)
                        .ok_or_else(|| self.error("escape"))?;
                    self.pos += 2;
                    let unit = match c {
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => 10,
                        b'r' => 13,
                        b't' => 9,
                        b'u' => {
                            let hex = self.d.get(self.pos..self.pos + 4).unwrap_or_default();
                            let text = std::str::from_utf8(hex).map_err(|_| self.error("hex"))?;
                            self.pos += 4;
                            u16::from_str_radix(text, 16).map_err(|_| self.error("hex"))?
                        }
                        c => c as u16,
                    };
                    units.push(unit);
                }
                Some(_) => {
                    flush_units(&mut units, &mut out);
                    let run_end = swar::find_escape(self.d, self.pos);
                    let run = &self.d[self.pos..run_end.min(self.d.len())];
                    out.push_str(std::str::from_utf8(run).map_err(|_| self.error("UTF-8"))?);
                    self.pos += run.len();
                    if self.peek().is_some_and(|c| c < 0x20) {
                        return Err(self.error("no control character"));
                    }
                }
            }
        }
        flush_units(&mut units, &mut out);
        Ok(out)
    }

    /// Skips one value.
    fn skip(&mut self, depth: u32) -> Result<(), String> {
        if depth > MAX_SCAN_DEPTH {
            return Err(self.error("less nesting"));
        }
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                loop {
                    let i = swar::find_escape(self.d, self.pos);
                    match self.d.get(i) {
                        Some(b'"') => {
                            self.pos = i + 1;
                            return Ok(());
                        }
                        Some(b'\\') => self.pos = i + 2,
                        _ => return Err(self.error("'\"'")),
                    }
                }
            }
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.skip(depth + 1)?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.error("',' or a closing bracket")),
                    }
                }
            }
            Some(_) => {
                self.scalar()?;
                Ok(())
            }
            None => Err(self.error("a value")),
        }
    }

    /// A number or literal, as text.
    fn scalar(&mut self) -> Result<&str, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("a value"));
        }
        // Only ASCII bytes were consumed.
        Ok(std::str::from_utf8(&self.d[start..self.pos]).unwrap_or_default())
    }

    /// A field's value as a field selector compares it.
    fn field_value(&mut self, depth: u32) -> Result<String, String> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => self.skip(depth).map(|()| String::new()),
            _ => {
                let text = self.scalar()?;
                Ok(if text == "null" {
                    String::new()
                } else {
                    text.to_string()
                })
            }
        }
    }

    fn walk_object(
        &mut self,
        node: &PathTree,
        out: &mut Extracted,
        depth: u32,
    ) -> Result<(), String> {
        if depth > MAX_SCAN_DEPTH {
            return Err(self.error("less nesting"));
        }
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            match node.child(&key) {
                None => self.skip(depth + 1)?,
                Some(child) => {
                    if child.labels && self.peek() == Some(b'{') {
                        self.labels(out)?;
                    } else if self.peek() == Some(b'{') && !child.children.is_empty() {
                        self.walk_object(child, out, depth + 1)?;
                    } else if let Some(i) = child.field {
                        out.fields[i] = self.field_value(depth + 1)?;
                    } else {
                        self.skip(depth + 1)?;
                    }
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
    }

    fn labels(&mut self, out: &mut Extracted) -> Result<(), String> {
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            if self.peek() == Some(b'"') {
                let value = self.string()?;
                out.labels.push((key, value));
            } else {
                self.skip(1)?;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("',' or '}'")),
            }
        }
    }
}

fn flush_units(units: &mut Vec<u16>, out: &mut String) {
    if !units.is_empty() {
        out.extend(char::decode_utf16(units.iter().copied()).map(|c| c.unwrap_or('\u{fffd}')));
        units.clear();
    }
}
