/**
 * Why the installer changes nothing in a repo: a conflict with the user's files, or a record it
 * cannot upgrade from. The message says what was found and what to do; the command prints it
 * without a stack trace and exits 1.
 */
export class InstallRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InstallRefusal";
  }
}
