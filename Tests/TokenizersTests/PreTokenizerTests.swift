import Foundation
@testable import Tokenizers
import XCTest

/// The hand-written scanners cut text exactly where `tokenizers`' Oniguruma regexes and Digits do
/// (pretokenize.jsonl: random strings dense in class changes, piece ends in code points).
final class PreTokenizerTests: XCTestCase {
    private struct Case: Decodable {
        let text: String
        let gpt2: [Int]
        let llama3: [Int]
        let qwen2: [Int]
        let digits: [Int]
        let individual_digits: [Int]
    }

    func testScannersCutWhereTokenizersDoes() throws {
        let file = try String(contentsOfFile: TokenizerFixtures.path("pretokenize.jsonl"), encoding: .utf8)
        let cases = try file.split(separator: "\n").map { try JSONDecoder().decode(Case.self, from: Data($0.utf8)) }
        XCTAssertEqual(cases.count, 2_000)
        var scanned = ScannedText()
        var mismatches = 0
        for testCase in cases {
            scanned.load(testCase.text.utf8)
            let expected: [(SplitPattern, [Int])] = [(.gpt2, testCase.gpt2), (.llama3, testCase.llama3), (.qwen2, testCase.qwen2),
                                                     (.digits(individual: false), testCase.digits),
                                                     (.digits(individual: true), testCase.individual_digits)]
            for (pattern, ends) in expected {
                var pieces: [Range<Int>] = []
                pattern.split(scanned, 0..<scanned.scalars.count, into: &pieces)
                if pieces.map(\.upperBound) != ends {
                    mismatches += 1
                    if mismatches <= 5 { XCTFail("\(pattern) on \(testCase.text.debugDescription): ends \(pieces.map(\.upperBound)), tokenizers \(ends)") }
                }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }
}
