/// A lexical pass over conf-file text that refuses, before TOMLKit sees it, every shape of broken
/// TOML on which the toml++ 3.4.0 bundled in TOMLKit 0.6.0 fails an assertion (and so aborts the
/// process, release builds included) instead of reporting a parse error:
///
/// - a table header whose name does not start with a key: after `[` or `[[` and any spaces or
///   tabs, a character that is neither a letter, digit, `_`, `-` nor a quote (`[#]`, `[,x]`,
///   `[é]`, `[[ [x]]`, `[` at the end of a line). `parse_table_header` calls `parse_key`, which
///   asserts it is at a key (fixed upstream in marzer/tomlplusplus#301);
/// - `}`, U+0085, U+2028 or U+2029 where an array expects a value (after `[` or a `,`, and any
///   blanks, line breaks and comments): `parse_array` calls `parse_value`, which asserts it is not
///   at a value terminator;
/// - a date followed by `T` and no digit (`1979-05-27T:00`): `parse_date_time` calls
///   `parse_time`, which asserts it is at a digit;
/// - a value starting with a digit followed by a space and a digit, other than a date followed by
///   a space and a two-digit hour (`1979-05-27 1`, `1979-05-2x 1]`): `parse_value` reads on past
///   the space, looking for a time, and asserts the next character does not end the value; with
///   enough `_` in the first part it also steps back further than its history holds.
///
/// Every shape refused here is invalid TOML, so no valid file is turned away. The pass follows
/// the structure toml++ parses (tables, keys, values, arrays, inline tables, all four kinds of
/// string, comments), so the same characters inside a string or a comment are left alone. Where
/// toml++ reports an error of its own before reaching any of these shapes, the pass stops there
/// and leaves the report to it.
public enum TOMLPrecheck {
    /// Where the text was refused and why, in the words of a `ConfigError`.
    public struct Refusal: Equatable, Sendable, CustomStringConvertible {
        /// The line, counted from 1.
        public var line: Int
        /// The column on that line, counted from 1 in Unicode scalars.
        public var column: Int
        /// What is wrong, quoting what was found.
        public var message: String
        /// What would have been accepted instead.
        public var allowed: String

        public var description: String { "line \(line), column \(column): \(message); allowed: \(allowed)" }
    }

    /// The first shape in `text` that would make the TOML parser abort, or nil when the parser
    /// can be given the text (whether it then accepts it or reports an error).
    public static func refusal(in text: String) -> Refusal? {
        var scanner = Scanner(Array(text.unicodeScalars))
        do {
            try scanner.document()
            return nil
        } catch {
            switch error {
            case .refused(let refusal): return refusal
            case .parserReports: return nil
            }
        }
    }
}

extension TOMLPrecheck {
    private enum Stop: Error {
        /// One of the shapes that abort the parser.
        case refused(Refusal)
        /// Text the parser reports as an error by itself, before anything after it is read.
        case parserReports
    }

    /// A cursor over the text's Unicode scalars, with one method per piece of TOML syntax. Each
    /// method starts on the piece's first character and ends just past its last one.
    private struct Scanner {
        let text: [Unicode.Scalar]
        var index = 0
        var line = 1
        var lineStart = 0
        /// Values inside values, counted as toml++ counts them.
        var depth = 0

        init(_ text: [Unicode.Scalar]) {
            self.text = text
            // toml++ skips a byte-order mark at the very start; columns count from after it.
            if text.first == "\u{FEFF}" {
                index = 1
                lineStart = 1
            }
        }

        func peek(_ ahead: Int = 0) -> Unicode.Scalar? {
            index + ahead < text.count ? text[index + ahead] : nil
        }

        mutating func advance() {
            if text[index] == "\n" {
                line += 1
                lineStart = index + 1
            }
            index += 1
        }

        /// A refusal at `at` (default: the current character), which must be on the current line.
        func refuse(_ message: String, allowed: String, at position: Int? = nil) -> Stop {
            .refused(Refusal(line: line, column: (position ?? index) - lineStart + 1, message: message, allowed: allowed))
        }

        // MARK: the document

        /// Lines of blanks, comments, table headers and key-value pairs.
        mutating func document() throws(Stop) {
            while let c = peek() {
                switch c {
                case " ", "\t", "\n": advance()
                case "\r": try lineBreak()
                case "#": comment()
                case "[":
                    try tableHeader()
                    try endOfLine()
                default:
                    guard isKeyStart(c) else { throw .parserReports }
                    try keyValue()
                    try endOfLine()
                }
            }
        }

        /// What may follow a header or a key-value pair on its line: blanks, then a comment, a line
        /// break or the end of the text.
        mutating func endOfLine() throws(Stop) {
            skipBlanks()
            switch peek() {
            case nil: return
            case "#": comment()
            case "\n": advance()
            case "\r": try lineBreak()
            default: throw .parserReports
            }
        }

        /// `\r\n`; a lone `\r` is an error the parser reports.
        mutating func lineBreak() throws(Stop) {
            guard peek(1) == "\n" else { throw .parserReports }
            advance()
            advance()
        }

        /// `#` up to and including the end of its line.
        mutating func comment() {
            while let c = peek() {
                advance()
                if c == "\n" { return }
            }
        }

        @discardableResult
        mutating func skipBlanks() -> Bool {
            let start = index
            while peek() == " " || peek() == "\t" { advance() }
            return index > start
        }

        // MARK: tables and keys

        /// `[key]` or `[[key]]`.
        mutating func tableHeader() throws(Stop) {
            advance()
            let spaced = skipBlanks()
            let isArray = peek() == "["
            if isArray {
                // `[ [`: the parser reports that the brackets must touch.
                if spaced { throw .parserReports }
                advance()
                skipBlanks()
            }
            guard let c = peek(), c != "]" else { throw .parserReports }
            guard isKeyStart(c) else {
                throw refuse("a table header must start with a name, saw \(describe(c))",
                             allowed: "[name] or [[name]], the name made of letters, digits, '_' and '-', or quoted")
            }
            try key()
            for _ in 0..<(isArray ? 2 : 1) {
                guard peek() == "]" else { throw .parserReports }
                advance()
            }
        }

        /// A dotted key: bare or quoted parts separated by `.`, with blanks around the dots.
        mutating func key() throws(Stop) {
            while true {
                guard let c = peek() else { throw .parserReports }
                if isBareKeyCharacter(c) {
                    while let k = peek(), isBareKeyCharacter(k) { advance() }
                } else if c == "\"" || c == "'" {
                    // A multi-line string as a key is an error the parser reports once it has read it.
                    if try string() { throw .parserReports }
                } else {
                    throw .parserReports
                }
                skipBlanks()
                guard peek() == "." else { return }
                advance()
                skipBlanks()
            }
        }

        /// `key = value`.
        mutating func keyValue() throws(Stop) {
            try key()
            skipBlanks()
            guard peek() == "=" else { throw .parserReports }
            advance()
            skipBlanks()
            // The parser checks for a value itself here, unlike in an array.
            guard let c = peek(), !isValueTerminator(c) else { throw .parserReports }
            try value()
        }

        // MARK: values

        mutating func value() throws(Stop) {
            // toml++ refuses values nested deeper than 256 (TOML_MAX_NESTED_VALUES), and the limit
            // keeps this recursion off the end of the stack.
            depth += 1
            defer { depth -= 1 }
            guard depth <= 256 else { throw .parserReports }
            switch peek() {
            case "\"", "'": try string()
            case "[": try array()
            case "{": try inlineTable()
            default: try bareValue()
            }
        }

        /// `[v, v, ...]`, over any number of lines, with comments.
        mutating func array() throws(Stop) {
            advance()
            var afterValue = false
            while true {
                while let c = peek() {
                    if c == " " || c == "\t" || c == "\n" {
                        advance()
                    } else if c == "\r" {
                        try lineBreak()
                    } else if c == "#" {
                        comment()
                    } else {
                        break
                    }
                }
                guard let c = peek() else { throw .parserReports }
                if c == "]" {
                    advance()
                    return
                }
                if c == "," {
                    guard afterValue else { throw .parserReports }
                    afterValue = false
                    advance()
                    continue
                }
                guard !afterValue else { throw .parserReports }
                if c == "}" || isLineSeparator(c) {
                    throw refuse("\(describe(c)) where the array expects a value",
                                 allowed: "a value or ']' after '[', a value after each ','")
                }
                // Other whitespace (U+00A0, \v, ...): refused by the parser with its own error.
                guard !isValueTerminator(c) else { throw .parserReports }
                try value()
                afterValue = true
            }
        }

        /// `{ k = v, k = v }` on one line.
        mutating func inlineTable() throws(Stop) {
            advance()
            enum Previous { case none, comma, pair }
            var previous = Previous.none
            while true {
                skipBlanks()
                guard let c = peek() else { throw .parserReports }
                switch c {
                case ",":
                    guard previous == .pair else { throw .parserReports }
                    previous = .comma
                    advance()
                case "}":
                    guard previous != .comma else { throw .parserReports }
                    advance()
                    return
                default:
                    guard isKeyStart(c), previous != .pair else { throw .parserReports }
                    try keyValue()
                    previous = .pair
                }
            }
        }

        /// A number, boolean, date or time: everything up to the next value terminator, and for a
        /// date followed by a space and a two-digit hour, the time after it.
        mutating func bareValue() throws(Stop) {
            let start = index
            while let c = peek(), !isValueTerminator(c) { advance() }
            let token = text[start..<index]
            let allowedDateTime = "a date-time such as 1979-05-27T07:32:00 or 1979-05-27 07:32:00 (the date, 'T' or one space, a two-digit hour)"

            if token.count > 10, isDate(token.prefix(10)), token[start + 10] == "T" || token[start + 10] == "t",
               !(token.count > 11 && isDigit(token[start + 11])) {
                let after = token.count > 11 ? token[start + 11] : peek()
                throw refuse("'\(show(token))' has \(describe(after)) where the hour of its date-time should start",
                             allowed: allowedDateTime, at: start + 11)
            }

            guard let first = token.first, isDigit(first), peek() == " ", let next = peek(1), isDigit(next) else { return }
            if isDate(token), let second = peek(2), isDigit(second) {
                advance()
                while let c = peek(), !isValueTerminator(c) { advance() }
                return
            }
            throw refuse("'\(show(token))' is followed by a space and a digit",
                         allowed: "one value per key; \(allowedDateTime)", at: index + 1)
        }

        /// A basic or literal string, single-line or multi-line; returns whether it was multi-line.
        @discardableResult
        mutating func string() throws(Stop) -> Bool {
            let quote = peek()!
            let escapes = quote == "\""
            if peek(1) == quote && peek(2) == quote {
                advance()
                advance()
                advance()
                while let c = peek() {
                    if c == quote {
                        // Three quotes close the string; up to two more right after them belong to it.
                        var run = 0
                        while peek() == quote && run < 5 {
                            advance()
                            run += 1
                        }
                        if run >= 3 { return true }
                    } else {
                        advance()
                        if c == "\\" && escapes {
                            guard peek() != nil else { break }
                            advance()
                        }
                    }
                }
                throw .parserReports
            }
            advance()
            while let c = peek(), c != "\n" {
                advance()
                if c == quote { return false }
                if c == "\\" && escapes {
                    guard let escaped = peek(), escaped != "\n" else { break }
                    advance()
                }
            }
            throw .parserReports
        }
    }
}

// MARK: character classes, as toml++ 3.4.0 defines them for TOML 1.0

private func isDigit(_ c: Unicode.Scalar) -> Bool {
    ("0"..."9").contains(c)
}

private func isBareKeyCharacter(_ c: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(c) || ("A"..."Z").contains(c) || isDigit(c) || c == "_" || c == "-"
}

private func isKeyStart(_ c: Unicode.Scalar) -> Bool {
    isBareKeyCharacter(c) || c == "\"" || c == "'"
}

/// U+0085 (next line), U+2028 (line separator), U+2029 (paragraph separator): vertical
/// whitespace to toml++, but not line breaks it skips.
private func isLineSeparator(_ c: Unicode.Scalar) -> Bool {
    c == "\u{85}" || c == "\u{2028}" || c == "\u{2029}"
}

/// toml++'s `is_value_terminator`: Unicode whitespace (horizontal and vertical), `]`, `}`, `,`, `#`.
private func isValueTerminator(_ c: Unicode.Scalar) -> Bool {
    switch c.value {
    case 0x09, 0x20, 0x0A...0x0D, 0x5D, 0x7D, 0x2C, 0x23: true
    case 0xA0, 0x1680, 0x180E, 0x2000...0x200B, 0x202F, 0x205F, 0x2060, 0x3000, 0xFEFF: true
    case 0x85, 0x2028, 0x2029: true
    default: false
    }
}

/// `YYYY-MM-DD` by shape (the digits are not checked).
private func isDate(_ token: ArraySlice<Unicode.Scalar>) -> Bool {
    guard token.count == 10 else { return false }
    return token.enumerated().allSatisfy { offset, c in offset == 4 || offset == 7 ? c == "-" : isDigit(c) }
}

/// A character as an error message quotes it.
private func describe(_ c: Unicode.Scalar?) -> String {
    guard let c else { return "the end of the file" }
    switch c {
    case "\n", "\r": return "the end of the line"
    case " ": return "a space"
    case "\t": return "a tab"
    case "\u{85}": return "U+0085 (next line)"
    case "\u{2028}": return "U+2028 (line separator)"
    case "\u{2029}": return "U+2029 (paragraph separator)"
    default:
        let hex = String(c.value, radix: 16, uppercase: true)
        let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        if c.value < 0x20 || c.value == 0x7F || c.properties.isWhitespace || !c.properties.isGraphemeBase { return code }
        return c.isASCII ? "'\(c)'" : "'\(c)' (\(code))"
    }
}

/// A value as an error message quotes it: at most 40 characters, unprintable ones as U+XXXX.
private func show(_ token: ArraySlice<Unicode.Scalar>) -> String {
    let shown = token.prefix(40).map { c -> String in
        c.value < 0x20 || c.value == 0x7F ? describe(c) : String(c)
    }.joined()
    return token.count > 40 ? shown + "..." : shown
}
