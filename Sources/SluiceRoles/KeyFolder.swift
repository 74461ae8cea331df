import Foundation
import SluicePlan
import SluiceTransport

/// A folder of CURVE keys, one pair per process of a run: `NAME.key` holds the pair (readable
/// by this user only) and `NAME.pub` its public half, to copy to the hosts that must trust it.
/// `sluice keys` and `sluice run` make them; the controller trusts every `NAME.pub` in its
/// folder, under that name, and nothing else.
public struct KeyFolder {
    public let path: String
    /// Larger files are not key files: refused before they are read whole.
    static let largestFile = 4096

    public init(_ path: String) { self.path = path }

    /// Role names become file names: letters, digits, `-`, `_` and `.`, not starting with a dot.
    public static func checkName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !name.isEmpty, name.count <= 64, !name.hasPrefix("."), name.allSatisfy({ allowed.contains($0) }) else {
            throw RoleError("'\(name)' cannot name a key: use up to 64 letters, digits, '-', '_' or '.', not starting with '.'")
        }
    }

    /// Makes the folder (private to this user) if it is not there; an existing one is used as it is.
    public func create() throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw RoleError("cannot make the key folder \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Makes a new pair for `name`. An existing key file is never replaced: it is an error,
    /// unless `reuse`, when the pair in it is returned.
    @discardableResult
    public func make(_ name: String, reuse: Bool = false) throws -> CurveKeyPair {
        try Self.checkName(name)
        let secretPath = "\(path)/\(name).key"
        if reuse, FileManager.default.fileExists(atPath: secretPath) { return try pair(of: name) }
        let keys = try CurveKeyPair.generate()
        try Self.writeNew(secretPath, mode: 0o600, Self.keyFileText(name, keys))
        try Self.writeNew("\(path)/\(name).pub", mode: 0o644, Self.publicFileText(name, keys.publicKey))
        return keys
    }

    static func keyFileText(_ name: String, _ keys: CurveKeyPair) -> String {
        """
        # Sluice CURVE key pair of '\(name)'. Keep it secret: whoever holds it is \(name) to the run.
        public-key = "\(keys.publicKey)"
        secret-key = "\(keys.secretKey)"

        """
    }

    static func publicFileText(_ name: String, _ publicKey: String) -> String {
        """
        # Sluice CURVE public key of '\(name)'. Give it to the controller that is to trust \(name).
        public-key = "\(publicKey)"

        """
    }

    /// The pair in `NAME.key`.
    public func pair(of name: String) throws -> CurveKeyPair {
        try Self.checkName(name)
        return try Self.readPair("\(path)/\(name).key")
    }

    /// Every `NAME.pub` in the folder: public key → name. Two names under one key are refused
    /// (the key would not say who its holder is).
    public func publicKeys() throws -> [String: String] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw RoleError("cannot read the key folder \(path): \(error.localizedDescription)")
        }
        var keys: [String: String] = [:]
        for file in names.sorted() where file.hasSuffix(".pub") {
            let name = String(file.dropLast(4))
            guard (try? Self.checkName(name)) != nil else { continue }
            let key = try Self.readPublic("\(path)/\(file)")
            if let other = keys[key] { throw RoleError("\(path)/\(file): the same key as \(other).pub; each process needs its own") }
            keys[key] = name
        }
        return keys
    }

    /// The pair in a key file `sluice keys` wrote.
    public static func readPair(_ file: String) throws -> CurveKeyPair {
        let fields = try read(file)
        guard let secret = fields["secret-key"] else { throw RoleError("\(file): no secret-key (is this a .pub file? a role needs its .key)") }
        guard let keys = CurveKeyPair(secretKey: secret.value, publicKey: fields["public-key"]?.value) else {
            throw RoleError("\(file):\(secret.line): secret-key is not a CURVE key, or not the public-key's")
        }
        return keys
    }

    /// The public key in a `.pub` or `.key` file.
    public static func readPublic(_ file: String) throws -> String {
        guard let key = try read(file)["public-key"] else { throw RoleError("\(file): no public-key") }
        guard CurveKeyPair.isWellFormed(key.value) else { throw RoleError("\(file):\(key.line): public-key is not a CURVE key (40 Z85 characters)") }
        return key.value
    }

    /// `name = "value"` lines; `#` starts a comment.
    private static func read(_ file: String) throws -> [String: (value: String, line: Int)] {
        guard let handle = FileHandle(forReadingAtPath: file) else {
            throw RoleError("cannot open the key file \(file): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: largestFile + 1)) ?? Data()
        guard data.count <= largestFile else { throw RoleError("\(file): larger than \(largestFile) bytes; not a key file") }
        var fields: [String: (value: String, line: Int)] = [:]
        for (index, raw) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, parts[1].count >= 2, parts[1].hasPrefix("\""), parts[1].hasSuffix("\"") else {
                throw RoleError("\(file):\(index + 1): expected name = \"value\"")
            }
            fields[parts[0]] = (String(parts[1].dropFirst().dropLast()), index + 1)
        }
        return fields
    }

    private static func writeNew(_ file: String, mode: mode_t, _ text: String) throws {
        let descriptor = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            let reason = errno == EEXIST ? "it exists (a key is never replaced; remove it or use another folder)" : String(cString: strerror(errno))
            throw RoleError("cannot write \(file): \(reason)")
        }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        guard write(descriptor, bytes, bytes.count) == bytes.count else {
            throw RoleError("cannot write \(file): \(String(cString: strerror(errno)))")
        }
    }
}

/// What a role process proves itself with: its own pair, and the controller's public key.
public struct RoleKeys {
    public var keys: CurveKeyPair
    public var controllerKey: String
    public init(keys: CurveKeyPair, controllerKey: String) { self.keys = keys; self.controllerKey = controllerKey }

    /// From the files a role is started with.
    public init(keyFile: String, controllerKeyFile: String) throws {
        self.init(keys: try KeyFolder.readPair(keyFile), controllerKey: try KeyFolder.readPublic(controllerKeyFile))
    }
}

/// The controller's keys: its own pair, and every process it trusts, from its key folder.
public struct ControllerKeys {
    public static let controllerName = "controller"
    public var folder: KeyFolder
    public var own: CurveKeyPair
    /// Public key → the name of the process that holds it.
    public var peers: [String: String]

    /// `controller.key` and every `NAME.pub` in `folder`.
    public init(folder: KeyFolder) throws {
        self.folder = folder
        own = try folder.pair(of: Self.controllerName)
        peers = try folder.publicKeys()
    }

    /// How a process of the run started on this host is told its keys.
    public func roleArguments(_ role: String) -> [String] { Self.roleArguments(role, folder: folder.path) }

    /// A role's key options, its keys in `folder` (as `sluice keys` writes them).
    public static func roleArguments(_ role: String, folder: String) -> [String] {
        ["--key", "\(folder)/\(role).key", "--controller-key", "\(folder)/\(controllerName).pub"]
    }
}

/// The command line of a role started by hand on a host of its own: what an operator, a systemd
/// unit and a Kubernetes pod run, and what the multi-host tests run.
public enum RoleCommand {
    /// `bind`: where a stage or the sink binds its data socket; `advertise`: the host others
    /// reach it by; `modelCache`: where a stage keeps the model it fetches.
    /// `joining`: a stage that joins the pool with `role`'s key and no name of its own.
    public static func arguments(role: String, controller: String, keyFolder: String, bind: String? = nil,
                                 advertise: String? = nil, modelCache: String? = nil, joining: Bool = false) -> [String] {
        let command = StageInstance.stage(of: role) != nil || joining ? "stage" : role
        var arguments = (joining ? [command, "--join", controller] : [command, "--controller", controller, "--name", role])
            + ControllerKeys.roleArguments(role, folder: keyFolder)
        if let bind { arguments += ["--bind", bind] }
        if let advertise { arguments += ["--advertise", advertise] }
        if let modelCache { arguments += ["--model-cache", modelCache] }
        return arguments
    }
}
