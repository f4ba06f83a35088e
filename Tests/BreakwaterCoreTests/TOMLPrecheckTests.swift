import Testing
@testable import BreakwaterCore

/// The text TOMLPrecheck keeps from TOMLKit's toml++, which would abort on it, and the text that
/// only looks like it (inside strings and comments, or valid TOML of the same characters).
@Suite struct TOMLPrecheckTests {
    /// A shape that aborts toml++ 3.4.0, and where the refusal must point.
    struct Shape: Sendable, CustomTestStringConvertible {
        let text: String
        let line: Int
        let column: Int
        /// Words the message must contain.
        let says: String
        var testDescription: String { text.debugDescription }
    }

    static let shapes: [Shape] = [
        // Table headers whose name does not start with a key.
        Shape(text: "[#]\n", line: 1, column: 2, says: "'#'"),
        Shape(text: "[server]\nworkers = 1\n[\t#\n", line: 3, column: 3, says: "'#'"),
        Shape(text: "[server]\nworkers = 1\n[\n", line: 3, column: 2, says: "the end of the line"),
        Shape(text: "[,erver]\n", line: 1, column: 2, says: "','"),
        Shape(text: "[éx]\n", line: 1, column: 2, says: "'é' (U+00E9)"),
        Shape(text: "[[ é ]]\nname = \"x\"\n", line: 1, column: 4, says: "'é'"),
        Shape(text: "[\t\u{FFFD}server]\n", line: 1, column: 3, says: "U+FFFD"),
        Shape(text: "[[ [x]]\n", line: 1, column: 4, says: "'['"),
        Shape(text: "[[[x]]]\n", line: 1, column: 3, says: "'['"),
        Shape(text: "  [.x]\n", line: 1, column: 4, says: "'.'"),
        Shape(text: "[\u{A0}x]\n", line: 1, column: 2, says: "U+00A0"),
        Shape(text: "[ =]\n", line: 1, column: 3, says: "'='"),
        Shape(text: "\u{FEFF}[é]\n", line: 1, column: 2, says: "'é'"),
        Shape(text: "a = 1 # [#]\r\n[\r\n", line: 2, column: 2, says: "the end of the line"),
        // `}` or a line separator where an array expects a value.
        Shape(text: "a = [}\n", line: 1, column: 6, says: "'}'"),
        Shape(text: "[upstream]\nretry_on = [\n}\n", line: 3, column: 1, says: "'}' where the array expects a value"),
        Shape(text: "a = [1,}\n", line: 1, column: 8, says: "'}'"),
        Shape(text: "a = [ # a comment ]\n }\n", line: 2, column: 2, says: "'}'"),
        Shape(text: "key = [\"header:x\", }\n", line: 1, column: 20, says: "'}'"),
        Shape(text: "a = [\u{2028}]\n", line: 1, column: 6, says: "U+2028 (line separator)"),
        Shape(text: "a = [\u{85}1]\n", line: 1, column: 6, says: "U+0085"),
        Shape(text: "a = [1, \u{2029}]\n", line: 1, column: 9, says: "U+2029"),
        Shape(text: "a = { b = [ } }\n", line: 1, column: 13, says: "'}'"),
        Shape(text: "a = [[1,}]]\n", line: 1, column: 9, says: "'}'"),
        // At toml++'s deepest nesting (256 values) it still asserts before it counts the depth.
        Shape(text: "a = " + String(repeating: "[", count: 256) + "}\n", line: 1, column: 261, says: "'}'"),
        // A date, then 'T' and no hour.
        Shape(text: "d = 1979-05-27T:00\n", line: 1, column: 16, says: "':' where the hour"),
        Shape(text: "d = 1979-05-27ta1:00\n", line: 1, column: 16, says: "'a'"),
        Shape(text: "d = [1979-05-27T]\n", line: 1, column: 17, says: "']'"),
        Shape(text: "d = 1979-05-27T", line: 1, column: 16, says: "the end of the file"),
        // A value starting with a digit, then a space and a digit, that is not a date and an hour.
        Shape(text: "d = 1979-05-27 1\n", line: 1, column: 16, says: "'1979-05-27' is followed by a space and a digit"),
        Shape(text: "d = [1979-05-27 1]\n", line: 1, column: 17, says: "followed by a space and a digit"),
        Shape(text: "d = 1979-05-2a 1\n", line: 1, column: 16, says: "'1979-05-2a'"),
        Shape(text: "d = 1" + String(repeating: "_", count: 116) + "979-05-27 12\n", line: 1, column: 132, says: "..."),
        Shape(text: "workers = 1 2\n", line: 1, column: 13, says: "'1' is followed"),
        Shape(text: "a = { b = 1979-05-27 1 }\n", line: 1, column: 22, says: "followed by a space"),
    ]

    @Test(arguments: shapes)
    func refusesTheShapesThatAbortTheParser(_ shape: Shape) throws {
        let refusal = try #require(TOMLPrecheck.refusal(in: shape.text))
        #expect(refusal.line == shape.line && refusal.column == shape.column, "\(refusal)")
        #expect(refusal.message.contains(shape.says), "\(refusal)")
        // Config.parse reports it as a syntax error naming the file and the place.
        let error = try #require(throws: ConfigError.self) { try Config.parse(shape.text, file: "bad.conf") }
        #expect(error.key == "syntax")
        #expect(error.description.hasPrefix("bad.conf: syntax: line \(shape.line), column \(shape.column): "))
        #expect(error.allowed == refusal.allowed)
    }

    /// Valid TOML made of the same characters: inside strings of all four kinds, in comments, as
    /// nested arrays on lines of their own, as quoted and bare keys, as dates and times.
    static let lookAlikes: [String] = [
        "# [#]\n# [é]\n#[\n# a = [}\n",
        "a = \"[#] } 1979-05-27T: 1979-05-27 1 [, [[ é\"\n",
        "a = '[,x]'\nb = '}'\n",
        "a = \"\"\"\n[#]\n}\n[\n1979-05-27 1\n\"\"\"\n",
        "a = '''\n[\n[[ é ]]\n'''\n",
        "a = \"\"\"a\"\"\"\"\nb = '''a'''''\n",
        "a = \"\"\"x \\\n  [#] \\\"\"\" }\"\"\"\n",
        "a = \"x\\\"[#\"\nb = \"\\\\\"\n",
        "a = [\n  [1, 2],\n  [\n    3\n  ],\n]\n",
        "a = [ \"}\" , '}', \"\"\"}\"\"\", '''}''' ]\n",
        "a = [ # }\n  1, # ]\n]\n",
        "a = [\r\n  1,\r\n  # }\r\n]\r\n",
        "\"quoted key\" = 1\n[ \"é\" ]\n[[ 'x' ]]\n[ a . b ]\n[ a . \"[#]\" ]\n",
        "[a]\n  [[b]]\n\t[ c ]\n",
        "\u{FEFF}[a]\nb = 1\n",
        "d = 1979-05-27T07:32:00Z\ne = 1979-05-27 07:32:00\nf = 1979-05-27\ng = 07:32:00\nh = 1979-05-27t07:32:00.5-07:00\n",
        "d = [1979-05-27, 1979-05-27 07:32:00, 1979-05-27T07:32:00]\n",
        "1979-05-27Tx = 1\n1979-05-27 = 2\n",
        "x = 1 # 1979-05-27 1\ny = 1_000\nz = -1\nw = +1.5e3\nv = 0x1F\n",
        "x = { a = [1, 2], b = \"}\", c = { d = [] } }\n",
        "x = []\ny = [[]]\nz = [ ]\n",
        "x = true\ny = inf\nz = -nan\n",
        "x = " + String(repeating: "[", count: 256) + String(repeating: "]", count: 256) + "\n",
    ]

    @Test(arguments: lookAlikes)
    func leavesValidTOMLAlone(_ text: String) throws {
        #expect(TOMLPrecheck.refusal(in: text) == nil)
        // TOMLKit parses it: whatever Config.parse then says is about the keys, not the syntax.
        do {
            _ = try Config.parse(text, file: "valid.conf")
        } catch let error as ConfigError {
            #expect(error.key != "syntax", "\(error)")
        }
    }

    @Test func leavesTheShippedConfAlone() throws {
        #expect(TOMLPrecheck.refusal(in: try readFile(ConfigTests.shippedPath)) == nil)
    }

    /// Broken text the parser reports by itself: the precheck lets it through, and the error
    /// Config.parse gives is TOMLKit's, with its own line and column.
    @Test(arguments: ["a = = 1\n", "[]\n", "[ [x]]\n", "a = [1 }\n", "a = \"\n[#]\n", "a = [,}]\n", "[a]]\n", "a = 1x\n", "[server]\n[", "[[ "])
    func leavesOtherErrorsToTheParser(_ text: String) throws {
        #expect(TOMLPrecheck.refusal(in: text) == nil)
        let error = try #require(throws: ConfigError.self) { try Config.parse(text, file: "bad.conf") }
        #expect(error.key == "syntax")
    }

    /// Nesting deeper than toml++'s 256 values: the precheck stops where toml++ reports the depth
    /// (rather than recursing 100,000 deep itself), whatever follows.
    @Test func deepNestingIsLeftToTheParsersDepthLimit() throws {
        let text = "a = " + String(repeating: "[", count: 100_000) + "}\n"
        #expect(TOMLPrecheck.refusal(in: text) == nil)
        let error = try #require(throws: ConfigError.self) { try Config.parse(text, file: "deep.conf") }
        #expect(error.message.contains("depth"), "\(error)")
    }
}
