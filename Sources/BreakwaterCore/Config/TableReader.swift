import TOMLKit

/// Reads the keys of one TOML table by hand rather than through Codable, so that every error can
/// name the exact dotted key, and a key nobody reads (a typo such as `max_body_byte`) is refused
/// instead of silently leaving the default in force.
struct TableReader {
    /// The table being read.
    let table: TOMLTable
    /// Its dotted path (`server`, `route[1].backoff`); empty for the document root.
    let path: String
    /// The file named in every error.
    let file: String

    /// Opens `table`, refusing any key not in `known` before a single value is read. `section`
    /// names the table in that refusal; by default it is worked out from `path`.
    init(_ table: TOMLTable, path: String, file: String, known: [String], section: String? = nil) throws {
        self.table = table
        self.path = path
        self.file = file
        for key in table.keys where !known.contains(key) {
            let section = section
                ?? (path.hasSuffix(".backoff") ? "[backoff]" : path.hasPrefix("route[") ? "[[route]]" : "[\(path)]")
            var message = "unknown key \(quote(key))"
            if table[key]?.type == .table { message = path.isEmpty ? "unknown section [\(key)]" : "unknown table [\(path).\(key)]" }
            if let near = Self.nearest(key, in: known) { message += " (did you mean \(quote(near))?)" }
            let allowed = path.isEmpty ? Allowed.sections : "the keys of \(section): " + known.joined(separator: ", ")
            throw ConfigError(file: file, key: name(key), message: message, allowed: allowed)
        }
    }

    /// The known key closest to a misspelt one, if it is close enough to be the likely intent:
    /// one edit for short keys, two for longer ones, so `mx` does not suggest `on`.
    static func nearest(_ key: String, in known: [String]) -> String? {
        let limit = max(1, min(2, key.count / 3))
        return known.map { ($0, editDistance($0, key)) }.filter { $0.1 <= limit }.min { $0.1 < $1.1 }?.0
    }

    /// The dotted path of `key` in this table.
    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Whether the file sets `key`; defaults apply to keys it does not.
    func has(_ key: String) -> Bool { table[key] != nil }

    /// An error at `key` quoting the offending value.
    func error(_ key: String, _ got: String, _ allowed: String) -> ConfigError {
        ConfigError(file: file, key: name(key), message: "got \(got)", allowed: allowed)
    }

    /// The value of `key` if it has one of `types`, nil when absent; a wrong type is an error
    /// that says which type it was, since `workers = "4"` looks right at a glance.
    func value(_ key: String, _ types: Set<TOMLType>, _ allowed: String) throws -> TOMLValueConvertible? {
        guard let v = table[key] else { return nil }
        guard types.contains(v.type) else { throw error(key, describe(v, withType: true), allowed) }
        return v
    }

    /// A string value.
    func string(_ key: String, _ allowed: String) throws -> String? {
        try value(key, [.string], allowed)?.string
    }

    /// An integer value.
    func int(_ key: String, _ allowed: String) throws -> Int? {
        try value(key, [.int], allowed)?.int
    }

    /// A float, or an integer taken as one: `factor = 2` means what it says.
    func number(_ key: String, _ allowed: String) throws -> Double? {
        guard let v = try value(key, [.int, .double], allowed) else { return nil }
        let n = v.double ?? Double(v.int!)
        guard n.isFinite else { throw error(key, describe(v), allowed) }
        return n
    }

    /// A boolean.
    func bool(_ key: String, _ allowed: String) throws -> Bool? {
        try value(key, [.bool], allowed)?.bool
    }

    /// A sub-table, inline (`{ base = "1s" }`) or not.
    func table(_ key: String, _ allowed: String) throws -> TOMLTable? {
        try value(key, [.table], allowed)?.table
    }

    /// The elements of an array.
    func array(_ key: String, _ allowed: String) throws -> [TOMLValueConvertible]? {
        guard let a = try value(key, [.array], allowed)?.array else { return nil }
        return Array(a)
    }

    /// A string turned into `T` by `parse`; a string that does not parse is quoted in the error.
    func parsed<T>(_ key: String, _ allowed: String, _ parse: (String) -> T?) throws -> T? {
        guard let text = try string(key, allowed) else { return nil }
        guard let v = parse(text) else { throw error(key, quote(text), allowed) }
        return v
    }

    /// A duration string such as `"500ms"`; see `Duration(parsing:)`.
    func duration(_ key: String, _ allowed: String = Allowed.duration) throws -> Duration? {
        try parsed(key, allowed, Duration.init(parsing:))
    }

    /// A byte count: a plain integer or a string such as `"10MB"`; see `ByteSize`.
    func size(_ key: String, _ allowed: String) throws -> Int? {
        guard let v = try value(key, [.int, .string], allowed) else { return nil }
        if let n = v.int { return n }
        guard let n = ByteSize.parse(v.string!) else { throw error(key, describe(v), allowed) }
        return n
    }

    /// An array of strings each turned into `T` by `parse`.
    func list<T>(_ key: String, _ allowed: String, _ parse: (String) -> T?) throws -> [T]? {
        guard let items = try array(key, allowed) else { return nil }
        return try items.map { item in
            guard let text = item.string else { throw error(key, describe(item, withType: true), allowed) }
            guard let v = parse(text) else { throw error(key, quote(text), allowed) }
            return v
        }
    }
}

/// A value as the operator wrote it, for `got ...`; with its type when the type was the mistake.
func describe(_ v: TOMLValueConvertible, withType: Bool = false) -> String {
    let text: String
    switch v.type {
    case .string: text = quote(v.string ?? "")
    case .int: text = String(v.int ?? 0)
    case .double: text = String(v.double ?? 0)
    case .bool: text = String(v.bool ?? false)
    case .array: return "an array"
    case .table: return "a table"
    case .date, .time, .dateTime: return "a \(v.type)"
    }
    let kinds: [TOMLType: String] = [.string: "a string", .int: "an integer", .double: "a float", .bool: "a boolean"]
    return withType ? "\(text) (\(kinds[v.type] ?? "\(v.type)"))" : text
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var previous = row[0]
        row[0] = i
        for j in 1...max(b.count, 1) where !b.isEmpty {
            let current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = current
        }
    }
    return row[b.count]
}
