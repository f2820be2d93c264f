export const PLUGIN_TYPE = "ambit-cni";
