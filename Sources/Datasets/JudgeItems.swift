import Foundation
import Shared

/// A query and responses to judge, with no label (`cerm judge`).
public struct JudgeItem: Sendable, Equatable {
    /// The line's `id`, else `FILE:LINE` as preference records are named.
    public var id: String
    public var query: String
    public var responses: [String]

    public init(id: String, query: String, responses: [String]) {
        self.id = id
        self.query = query
        self.responses = responses
    }

    /// The items of a JSON Lines file, one a line: `{"query": "…", "responses": ["…", …]}`, an
    /// optional `id`; other keys are ignored, so a Best-of-N file (docs/DATA.md) judges as it is.
    /// Blank lines are skipped. A bad line is a ``DataError`` naming the file, the line and the
    /// key, as ``PreferenceLoader`` reports them; a file without items is an error naming it.
    public static func load(path: String) throws(DataError) -> [JudgeItem] {
        var reader = try JSONLinesReader(path: path)
        var items: [JudgeItem] = []
        let defaultIDPrefix = (path as NSString).lastPathComponent
        while let (number, bytes) = try reader.next() {
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let object = try PreferenceLoader.parseObject(bytes, file: path, line: number)
            let fields = FieldReader(object: object, file: path, line: number)
            items.append(JudgeItem(id: try fields.optionalID("id") ?? "\(defaultIDPrefix):\(number)",
                                   query: try fields.requiredString("query"),
                                   responses: try fields.stringArray("responses", minimumCount: 1)))
        }
        guard !items.isEmpty else {
            throw DataError(file: path, line: nil, field: "", message: "no items (expected one {\"query\": …, \"responses\": […]} per line)")
        }
        return items
    }
}
