/// The one place Sluice's version is written; `sluice --version` prints it.
enum SluiceVersion {
    static let current = "0.2.0"
}
