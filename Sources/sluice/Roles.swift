import ArgumentParser
import Foundation
import SluiceRoles

/// Options every worker role takes: it learns everything else from the controller.
struct RoleOptions: ParsableArguments {
    @Option(name: [.customLong("controller"), .customLong("join")],
            help: "The controller's control endpoint, e.g. tcp://10.0.0.5:5600 (--join says the same).")
    var controller: String

    @Option(help: "This role's name in the pipeline (stage-0, stage-1, …, source, sink). A stage started without one joins the pool: the controller gives it a stage that has no process, now or when one dies.")
    var name: String?

    @Option(help: "This role's CURVE key pair (NAME.key from `sluice keys`), for a controller on tcp with CURVE.")
    var key: String?

    @Option(help: "The controller's public key (controller.pub from `sluice keys`); goes with --key.")
    var controllerKey: String?

    @Option(help: "Bind this role's data socket here at start, e.g. tcp://0.0.0.0:0 (port 0: any free port): for a stage or the sink on another host than the controller's.")
    var bind: String?

    @Option(help: "The host name or address other hosts reach this role by (with --bind on every address).")
    var advertise: String?

    @Flag(help: .hidden)
    var managed = false

    func binding() throws -> DataBinding? {
        guard let bind else {
            if advertise != nil { throw ValidationError("--advertise goes with --bind") }
            return nil
        }
        return try DataBinding(bind: bind, advertise: advertise)
    }

    func roleKeys() throws -> RoleKeys? {
        switch (key, controllerKey) {
        case (nil, nil): return nil
        case (let key?, let controllerKey?): return try RoleKeys(keyFile: key, controllerKeyFile: controllerKey)
        default: throw ValidationError("--key and --controller-key go together: a role proves who it is with the one and checks the controller with the other")
        }
    }
}

/// Runs a worker role until the controller lets it go, exiting with its status.
/// `joins`: a role started without `--name` waits in the pool for one (stages).
func runRole<Role: PipelineRole>(_ type: Role.Type, _ options: RoleOptions, joins: Bool = false, configure: (Role) -> Void = { _ in }) throws {
    StopSignal.install(options.managed ? .managedRole : .byHand)
    guard options.name != nil || joins else { throw ValidationError("give --name: only a stage joins without one") }
    let role: Role
    do {
        let keys = try options.roleKeys()
        // Checked before joining: a process that cannot bind must not take a place in the pool.
        let binding = try options.binding()
        guard let name = try options.name ?? StagePool.join(controller: options.controller, keys: keys) else { return }
        role = try Role(name: name, controller: options.controller, keys: keys, binding: binding)
    } catch let error as ValidationError {
        throw error
    } catch {
        throw ExitCodes.report(error)
    }
    configure(role)
    let status = role.run()
    if status != 0 { throw ExitCode(status) }
}
