// Network namespace fds.
import { native } from "./native.js";
import { checkFd, checkPath } from "./validate.js";

/**
 * Opens a network namespace (O_RDONLY|O_CLOEXEC), e.g. `/var/run/netns/foo` or
 * `/proc/<pid>/ns/net`. The caller owns the fd and closes it with {@link closeFd}.
 * Throws ENOENT for a missing path, EINVAL if the file is not a network namespace.
 */
export function openNetns(path: string): number {
  return native.openNetns(checkPath(path, "path"));
}

/**
 * Closes an fd this package handed out (a namespace fd, a raw listener, a received fd).
 * Throws EBADF if it was not open. Refuses the fds the addon keeps for itself.
 */
export function closeFd(fd: number): void {
  native.closeFd(checkFd(fd));
}

/**
 * True when fd refers to a network namespace (NS_GET_NSTYPE, or the nsfs
 * filesystem on kernels before 4.11), e.g. to vet an fd received over ZDS.
 * False for any other open fd; throws EBADF for a closed one.
 */
export function isNetnsFd(fd: number): boolean {
  return native.isNetnsFd(checkFd(fd));
}
