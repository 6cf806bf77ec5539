@testable import Shared
import Testing

@Suite struct JSONParserTests {
    @Test func parsesEscapesNumbersAndNesting() throws {
        let value = try JSONParser.parse(Array(#" {"a":"\u00e9\ud83d\ude00\n\/","b":[1,-2.5e1,true,null],"c":{}} "#.utf8))
        #expect(value["a"] == .string("é😀\n/"))
        #expect(value["b"] == .array([.number(1, isInteger: true), .number(-25, isInteger: false), .bool(true), .null]))
        #expect(value["c"] == .object([]))
    }

    @Test func reportsTheOffendingByte() {
        func offset(_ text: String) -> String {
            do {
                _ = try JSONParser.parse(Array(text.utf8))
                return "ok"
            } catch {
                return "\(error.offset): \(error.message)"
            }
        }
        #expect(offset(#"{"a":01}"#) == "6: leading zero in number")
        #expect(offset(#"{"a":"\ud800"}"#) == "7: unpaired surrogate in \\u escape")
        #expect(offset(#"{"a":"x"} 1"#) == "11: unexpected text after the value")
        #expect(offset(#"{"a":"#) == "6: unexpected end of line")
        #expect(offset(String(repeating: "[", count: 70)) == "65: nesting deeper than 64")
    }

    @Test func writerEscapesControlCharacters() {
        #expect(JSONWriter.quote("a\"b\\c\n\u{7f}") == #""a\"b\\c\n\u007f""#)
        #expect(JSONWriter.stringArray(["x", "y"]) == #"["x","y"]"#)
    }
}
