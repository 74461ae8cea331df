import Foundation
import Testing
@testable import SluiceRoles

/// `sluice run` makes its own folder for ipc endpoints; whatever already stands at the name it
/// would take (a FIFO, a file, someone's folder) is left exactly as it was.
@Test func theRunFolderNeverReplacesWhatIsAtItsName() throws {
    let parent = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-rundir-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: parent) }
    let base = parent + "/sluice-42"

    let fresh = try Launcher.makeRunDirectory(base: base)
    #expect(fresh == base)
    var info = stat()
    #expect(stat(fresh, &info) == 0 && info.st_mode & 0o777 == 0o700)
    try FileManager.default.removeItem(atPath: fresh)

    #expect(mkfifo(base, 0o600) == 0)
    let beside = try Launcher.makeRunDirectory(base: base)
    #expect(beside != base && beside.hasPrefix(base + "-"))
    #expect(stat(base, &info) == 0 && info.st_mode & S_IFMT == S_IFIFO, "the FIFO was replaced")
    #expect(stat(beside, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR && info.st_mode & 0o777 == 0o700)
}

/// A controller whose launcher died removes the run folder in its place: only a folder that
/// launcher could have made, never another path it was given.
@Test func onlyTheLaunchersOwnRunFolderCountsAsOne() throws {
    let parent = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-rundir-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: parent) }
    let made = try Launcher.makeRunDirectory(base: parent + "/sluice-42")
    try FileManager.default.removeItem(atPath: made)
    #expect(mkfifo(parent + "/sluice-42", 0o600) == 0)
    let beside = try Launcher.makeRunDirectory(base: parent + "/sluice-42")
    #expect(Launcher.isRunDirectory(made, madeBy: 42, in: parent))
    #expect(Launcher.isRunDirectory(beside, madeBy: 42, in: parent))
    for other in [parent + "/sluice-43", parent + "/sluice-420", parent + "/sluice-42-x", parent + "/data",
                  parent, parent + "/sub/sluice-42", "/", parent + "/sluice-42/.."] {
        #expect(!Launcher.isRunDirectory(other, madeBy: 42, in: parent), "\(other)")
    }
}

/// Removing a run folder removes the ipc sockets the run left and the folder; a file of any
/// other kind found there is not the run's: it stays, and so does the folder.
@Test func removingARunFolderTakesOnlyItsSockets() throws {
    let parent = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-rundir-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: parent) }
    let run = try Launcher.makeRunDirectory(base: parent + "/sluice-42")
    #expect(mknod(run + "/stage-0.ipc", S_IFSOCK | 0o600, 0) == 0)
    #expect(mknod(run + "/sink.ipc", S_IFSOCK | 0o600, 0) == 0)
    Launcher.removeRunDirectory(run)
    #expect(!FileManager.default.fileExists(atPath: run), "the emptied run folder stayed")

    let other = try Launcher.makeRunDirectory(base: parent + "/sluice-43")
    #expect(mknod(other + "/control.ipc", S_IFSOCK | 0o600, 0) == 0)
    #expect(mkfifo(other + "/stage-1.ipc", 0o600) == 0)
    try "notes".write(toFile: other + "/notes.txt", atomically: false, encoding: .utf8)
    Launcher.removeRunDirectory(other)
    #expect(!FileManager.default.fileExists(atPath: other + "/control.ipc"))
    var info = stat()
    #expect(lstat(other + "/stage-1.ipc", &info) == 0 && info.st_mode & S_IFMT == S_IFIFO, "a FIFO that was not the run's was removed")
    #expect(FileManager.default.contents(atPath: other + "/notes.txt") == Data("notes".utf8))
}
