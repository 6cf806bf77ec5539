import Foundation

/// A line chart as inline SVG for the training report: one or more series over a numeric x
/// axis, axis labels with units, ticks, optional vertical marks (cluster events) and single
/// points (held-out evaluations). Long series are downsampled to at most ``maxPlottedPoints``
/// buckets drawn as the bucket mean with a min/max band, so 10,000 steps stay legible and small.
/// The markup is XHTML-compatible (it parses as XML), so tests can read it with a real parser.
struct SVGChart {
    struct Series {
        var label: String
        var color: String
        var dashed = false
        /// (x, y); non-finite y values leave a gap.
        var points: [(x: Double, y: Double)]
    }

    /// A vertical line at `x` (an event), explained by its `title` on hover.
    struct Mark {
        var x: Double
        var color: String
        var title: String
    }

    /// A single highlighted point (e.g. a held-out accuracy measured at a step).
    struct Point {
        var x: Double
        var y: Double
        var color: String
        var title: String
    }

    var id: String
    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var marks: [Mark] = []
    var points: [Point] = []

    static let width = 600.0, height = 270.0
    static let left = 70.0, right = 16.0, top = 14.0, bottom = 46.0
    /// More points than this are bucketed (a plot is ~500 px wide: more would not show).
    static let maxPlottedPoints = 400
    /// Series this short also get a dot per point (a 1-step run is a dot, not nothing).
    static let markerLimit = 60

    /// Whether there is anything to draw: a finite point in some series, or a single point.
    var hasData: Bool { series.contains { $0.points.contains { $0.y.isFinite && $0.x.isFinite } } || !points.isEmpty }

    /// A bucket of consecutive points: mean position, and the y range it covers.
    struct Bucket: Equatable {
        var x: Double
        var y: Double
        var low: Double
        var high: Double
    }

    /// `points` as at most `limit` buckets of equal x width (means with min/max), or one bucket
    /// per point when they fit; a non-finite y is kept as a bucket of NaN (a gap).
    static func downsample(_ points: [(x: Double, y: Double)], limit: Int = maxPlottedPoints) -> [Bucket] {
        let usable = points.filter { $0.x.isFinite }
        guard usable.count > limit, let first = usable.first?.x, let last = usable.last?.x, last > first else {
            return usable.map { Bucket(x: $0.x, y: $0.y, low: $0.y, high: $0.y) }
        }
        let width = (last - first) / Double(limit)
        var buckets: [Bucket] = []
        var index = 0
        while index < usable.count {
            let bucketIndex = min(limit - 1, Int((usable[index].x - first) / width))
            var xs = 0.0, ys = 0.0, count = 0, finite = 0
            var low = Double.infinity, high = -Double.infinity
            while index < usable.count, min(limit - 1, Int((usable[index].x - first) / width)) == bucketIndex {
                let point = usable[index]
                xs += point.x; count += 1
                if point.y.isFinite { ys += point.y; finite += 1; low = min(low, point.y); high = max(high, point.y) }
                index += 1
            }
            buckets.append(finite > 0 ? Bucket(x: xs / Double(count), y: ys / Double(finite), low: low, high: high)
                                      : Bucket(x: xs / Double(count), y: .nan, low: .nan, high: .nan))
        }
        return buckets
    }

    /// Round tick positions covering [low, high]: steps of 1, 2 or 5 × 10^k, about `count` of them.
    static func ticks(_ low: Double, _ high: Double, count: Int = 5, integer: Bool = false) -> (values: [Double], step: Double) {
        guard high > low else { return ([low], 1) }
        let raw = (high - low) / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        if integer { step = max(1, step.rounded()) }
        var values: [Double] = []
        var value = (low / step).rounded(.up) * step
        while value <= high + step * 1e-9 {
            values.append(abs(value) < step * 1e-9 ? 0 : value)
            value += step
        }
        return (values, step)
    }

    /// A tick label with as many decimals as the tick step needs (exponent form for tiny or huge).
    static func label(_ value: Double, step: Double) -> String {
        guard value.isFinite else { return "\(value)" }
        let magnitude = max(abs(value), step)
        if magnitude >= 1e6 || (step < 1e-4 && value != 0) { return String(format: "%.2g", value) }
        let decimals = step >= 1 ? 0 : Int(-floor(log10(step)))
        return String(format: "%.\(decimals)f", value)
    }

    /// The chart as an `<svg>` element.
    func render() -> String {
        let plotWidth = Self.width - Self.left - Self.right, plotHeight = Self.height - Self.top - Self.bottom
        let drawn = series.map { (series: $0, buckets: Self.downsample($0.points)) }
        // The axis spans the data, not the bucket means (the last bucket's mean is before the last step).
        let finiteX = series.flatMap { $0.points.map(\.x) }.filter(\.isFinite) + points.map(\.x)
        let finiteY = drawn.flatMap { $0.buckets.flatMap { [$0.low, $0.high] } }.filter(\.isFinite) + points.map(\.y).filter(\.isFinite)
        var xLow = finiteX.min() ?? 0, xHigh = finiteX.max() ?? 1
        if xHigh - xLow < 2 { xLow -= 1; xHigh += 1 }
        var yLow = finiteY.min() ?? 0, yHigh = finiteY.max() ?? 1
        if yHigh - yLow < max(1e-12, abs(yHigh) * 1e-6) {
            let pad = yHigh == 0 ? 1 : abs(yHigh) * 0.1
            yLow -= pad; yHigh += pad
        } else {
            let pad = (yHigh - yLow) * 0.05
            yLow -= pad; yHigh += pad
        }
        func px(_ x: Double) -> Double { Self.left + (x - xLow) / (xHigh - xLow) * plotWidth }
        func py(_ y: Double) -> Double { Self.top + (yHigh - y) / (yHigh - yLow) * plotHeight }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }

        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"\(escapeXML(id))\" viewBox=\"0 0 \(Int(Self.width)) \(Int(Self.height))\""
            + " role=\"img\" aria-label=\"\(escapeXML(title))\" data-x0=\"\(xLow)\" data-x1=\"\(xHigh)\" data-left=\"\(Self.left)\" data-plot-width=\"\(plotWidth)\""
            + " data-points=\"\(drawn.reduce(0) { $0 + $1.buckets.filter { $0.y.isFinite }.count } + points.count)\">"
        svg += "<title>\(escapeXML(title))</title>"
        svg += "<rect class=\"frame\" x=\"\(f(Self.left))\" y=\"\(f(Self.top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\"/>"
        let yTicks = Self.ticks(yLow, yHigh)
        for value in yTicks.values {
            let y = py(value)
            svg += "<line class=\"grid\" x1=\"\(f(Self.left))\" y1=\"\(f(y))\" x2=\"\(f(Self.left + plotWidth))\" y2=\"\(f(y))\"/>"
            svg += "<text class=\"tick\" x=\"\(f(Self.left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(Self.label(value, step: yTicks.step))</text>"
        }
        let xTicks = Self.ticks(xLow, xHigh, count: 6, integer: true)
        for value in xTicks.values {
            let x = px(value)
            svg += "<line class=\"grid\" x1=\"\(f(x))\" y1=\"\(f(Self.top))\" x2=\"\(f(x))\" y2=\"\(f(Self.top + plotHeight))\"/>"
            svg += "<text class=\"tick\" x=\"\(f(x))\" y=\"\(f(Self.top + plotHeight + 16))\" text-anchor=\"middle\">\(Self.label(value, step: xTicks.step))</text>"
        }
        svg += "<text class=\"axis-label\" x=\"\(f(Self.left + plotWidth / 2))\" y=\"\(f(Self.height - 8))\" text-anchor=\"middle\">\(escapeXML(xLabel))</text>"
        svg += "<text class=\"axis-label\" transform=\"translate(14 \(f(Self.top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(escapeXML(yLabel))</text>"
        // Marks first, under the data; one per pixel column and colour at most.
        var seen = Set<String>()
        for mark in marks where mark.x.isFinite {
            let x = px(min(max(mark.x, xLow), xHigh))
            guard seen.insert("\(Int(x.rounded()))|\(mark.color)").inserted else { continue }
            svg += "<line class=\"mark\" x1=\"\(f(x))\" y1=\"\(f(Self.top))\" x2=\"\(f(x))\" y2=\"\(f(Self.top + plotHeight))\" stroke=\"\(mark.color)\"><title>\(escapeXML(mark.title))</title></line>"
        }
        for (series, buckets) in drawn {
            if buckets.contains(where: { $0.low != $0.high }) {
                // The band: along the highs, back along the lows, per unbroken run of buckets.
                for run in Self.unbrokenRuns(buckets) where run.count > 1 {
                    let upper = run.map { "\(f(px($0.x))),\(f(py($0.high)))" }
                    let lower = run.reversed().map { "\(f(px($0.x))),\(f(py($0.low)))" }
                    svg += "<polygon class=\"band\" fill=\"\(series.color)\" points=\"\((upper + lower).joined(separator: " "))\"/>"
                }
            }
            let path = Self.unbrokenRuns(buckets).map { run in
                run.enumerated().map { "\($0.offset == 0 ? "M" : "L")\(f(px($0.element.x))) \(f(py($0.element.y)))" }.joined(separator: " ")
            }.joined(separator: " ")
            let values = buckets.filter { $0.y.isFinite }.map { "\(Self.compact($0.x)):\(Self.compact($0.y))" }.joined(separator: ";")
            svg += "<path class=\"series\" fill=\"none\" stroke=\"\(series.color)\"\(series.dashed ? " stroke-dasharray=\"6 4\"" : "")"
                + " d=\"\(path)\" data-label=\"\(escapeXML(series.label))\" data-values=\"\(values)\"><title>\(escapeXML(series.label))</title></path>"
            if buckets.count <= Self.markerLimit {
                for bucket in buckets where bucket.y.isFinite {
                    svg += "<circle class=\"dot\" cx=\"\(f(px(bucket.x)))\" cy=\"\(f(py(bucket.y)))\" r=\"2.5\" fill=\"\(series.color)\">"
                        + "<title>\(escapeXML(series.label)): \(Self.compact(bucket.x)), \(Self.compact(bucket.y))</title></circle>"
                }
            }
        }
        for point in points where point.x.isFinite && point.y.isFinite {
            let x = px(point.x), y = py(point.y)
            svg += "<path class=\"point\" d=\"M\(f(x)) \(f(y - 6)) L\(f(x + 6)) \(f(y)) L\(f(x)) \(f(y + 6)) L\(f(x - 6)) \(f(y)) Z\" fill=\"\(point.color)\">"
                + "<title>\(escapeXML(point.title))</title></path>"
        }
        svg += "<line class=\"cursor\" x1=\"0\" y1=\"\(f(Self.top))\" x2=\"0\" y2=\"\(f(Self.top + plotHeight))\" visibility=\"hidden\"/>"
        return svg + "</svg>"
    }

    /// Consecutive buckets with finite y (a NaN breaks the line).
    static func unbrokenRuns(_ buckets: [Bucket]) -> [[Bucket]] {
        buckets.split { !$0.y.isFinite }.map(Array.init)
    }

    /// Up to 6 significant digits, for hover text and data attributes.
    static func compact(_ value: Double) -> String {
        guard value.isFinite else { return "\(value)" }
        if value == value.rounded(), abs(value) < 1e12 { return String(Int64(value)) }
        return String(format: "%.6g", value)
    }
}

/// `text` safe in XML/HTML text and double-quoted attribute values.
func escapeXML(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(character)
        }
    }
    return out
}
